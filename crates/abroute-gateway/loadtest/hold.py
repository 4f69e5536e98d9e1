#!/usr/bin/env python3
"""Many peers held open at once against `abroute serve`: the RSS each one costs.

    hold.py BIN idle N      N idle keep-alive clients (each sent one GET /healthz, then waits)
    hold.py BIN streams N   N chat streams open at once, through the gateway to a slow SSE
                            upstream in this script (one event a second per stream)

Starts the gateway (release build; header_timeout raised to 5 minutes so idle clients stay,
max_connections to 15,000 above the default that a file limit of 20,000 gives),
samples its RSS (/proc/<pid>/status) before and while the peers are held, checks that a new
request is still answered meanwhile, and prints the RSS per peer. Every wait is bounded.
Needs `ulimit -n` above 2 N + 100 for this process (the gateway raises its own).
"""

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time

GATEWAY_PORT = int(os.environ.get("HOLD_PORT", "18580"))
UPSTREAM_PORT = GATEWAY_PORT + 1
STREAM_SECONDS = 120


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def slow_upstream(reader, writer):
    """An SSE upstream: one chat chunk a second, for STREAM_SECONDS (a JSON answer at once when
    the request is not a stream)."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        if b'"stream":true' not in body.replace(b" ", b""):
            answer = (b'{"id":"c","object":"chat.completion","choices":[{"index":0,"message":'
                      b'{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}')
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                         b"content-length: %d\r\n\r\n" % len(answer) + answer)
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        for i in range(STREAM_SECONDS):
            writer.write(
                b'data: {"id":"s","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"t"}}]}\n\n'
            )
            await writer.drain()
            await asyncio.sleep(1)
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


CHAT = (
    b'{"model": "inworld/compare-frontier-models", "stream": true, '
    b'"messages": [{"role": "user", "content": "Hello!"}]}'
)


async def hold_idle():
    r, w = await asyncio.open_connection("127.0.0.1", GATEWAY_PORT)
    w.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    await w.drain()
    await asyncio.wait_for(r.readuntil(b"ok\n"), 60)
    return r, w


async def hold_stream():
    r, w = await asyncio.open_connection("127.0.0.1", GATEWAY_PORT)
    w.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + b"content-length: %d\r\n\r\n" % len(CHAT)
        + CHAT
    )
    await w.drain()
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
    assert head.startswith(b"HTTP/1.1 200"), head
    await asyncio.wait_for(r.readuntil(b"\n\n"), 60)  # the first event
    return r, w


async def fresh_request():
    """A new connection, one request: answered while the others are held?"""
    start = time.monotonic()
    r, w = await asyncio.open_connection("127.0.0.1", GATEWAY_PORT)
    body = CHAT.replace(b'"stream": true, ', b"")
    w.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
        + body
    )
    await w.drain()
    answer = await asyncio.wait_for(r.read(), 30)
    w.close()
    return answer.split(b"\r\n", 1)[0].decode(), time.monotonic() - start


async def main(binary, mode, n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    upstream = await asyncio.start_server(slow_upstream, "127.0.0.1", UPSTREAM_PORT, backlog=4096)
    provider = f'base_url = "http://127.0.0.1:{UPSTREAM_PORT}/v1"' if mode == "streams" else "mock = true"
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write(
        f'listen = "127.0.0.1:{GATEWAY_PORT}"\nseed_router = true\n[auth]\nenabled = false\n'
        f'[[providers]]\nname = "*"\n{provider}\n'
        '[limits]\nheader_timeout = "5m"\nmax_connections = 15000\n'
    )
    config.close()
    gw = subprocess.Popen([binary, "serve", "--config", config.name],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", GATEWAY_PORT)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        # Warm up: pools, allocator, the first streams.
        for _ in range(3):
            print("warm-up:", *await fresh_request())
        warm = [await hold_stream() for _ in range(20)] if mode == "streams" else []
        await asyncio.sleep(1)
        before = rss_kb(gw.pid)
        hold = hold_stream if mode == "streams" else hold_idle
        kind = "stream" if mode == "streams" else "connection"
        # Two rounds: the second shows whether what the first left behind is reused.
        for round_ in (1, 2):
            held = []
            t0 = time.monotonic()
            batch = 200
            for i in range(0, n, batch):
                held += await asyncio.gather(*(hold() for _ in range(min(batch, n - i))))
            opened = time.monotonic() - t0
            await asyncio.sleep(3)
            during = rss_kb(gw.pid)
            status, took = await fresh_request()
            print(f"round {round_}: {mode}: {len(held)} held (opened in {opened:.1f} s); RSS {before} KiB "
                  f"before, {during} KiB held: {(during - before) * 1024 / len(held):.0f} bytes per {kind}")
            print(f"round {round_}: a new request meanwhile: {status} in {took * 1000:.1f} ms")
            for _, w in held:
                w.close()
            await asyncio.sleep(3)
            print(f"round {round_}: RSS after closing them: {rss_kb(gw.pid)} KiB")
        for _, w in warm:
            w.close()
    finally:
        gw.terminate()
        try:
            gw.wait(timeout=40)
        except subprocess.TimeoutExpired:
            gw.kill()
        upstream.close()
        os.unlink(config.name)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] not in ("idle", "streams"):
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
