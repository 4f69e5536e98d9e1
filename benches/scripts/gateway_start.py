#!/usr/bin/env python3
"""The gateway's start with many routers: time from the process start to the first 200 of
/readyz, and the RSS then, for a state file of N three-variant routers (`tenant_router_json`'s
JSON, benches/src/lib.rs).

    cargo build --release -p abroute-gateway
    python3 benches/scripts/gateway_start.py target/release/abroute 20000 100000

Loopback only; every wait is bounded (60 s per start, polls every 10 ms).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

START_TIMEOUT_S = 60.0


def tenant_router(i, first=33):
    b = (100 - first) // 2
    c = 100 - first - b
    variants = [("a", "openai/gpt-4o-mini", first), ("b", "openai/gpt-3.5-turbo", b),
                ("c", "openai/gpt-4.1", c)]
    return {"name": f"tenant-{i}", "defaultRoute": {"route_id": "default", "variants": [
        {"variant": {"variant_id": f"t{i}-{v}", "model_id": m}, "weight": w}
        for v, m, w in variants]}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start(binary, n, workdir):
    state = os.path.join(workdir, f"state-{n}.json")
    with open(state, "w") as f:
        json.dump({"abroute_state": 1, "routers": [tenant_router(i) for i in range(n)]}, f)
    config = os.path.join(workdir, "lazy.toml")
    with open(config, "w") as f:
        f.write("[routing]\nlazy_sticky_tables = true\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}/readyz"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [binary, "serve", "--config", config, "--state", state, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = None
    try:
        while time.monotonic() - t0 < START_TIMEOUT_S and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        ready = time.monotonic() - t0
                        break
            except OSError:
                pass
            time.sleep(0.01)
        rss = rss_kib(proc.pid) if proc.poll() is None else 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    size = os.path.getsize(state)
    os.remove(state)
    return ready, rss, size


def main():
    binary = sys.argv[1]
    counts = [int(a) for a in sys.argv[2:]] or [20000, 100000]
    with tempfile.TemporaryDirectory() as workdir:
        for n in counts:
            ready, rss, size = start(binary, n, workdir)
            shown = f"{ready:.2f} s" if ready is not None else f"not ready within {START_TIMEOUT_S} s"
            print(f"{n} routers ({size / 1e6:.1f} MB state file): ready after {shown}, "
                  f"RSS {rss / 1024:.0f} MiB ({rss / n:.1f} KiB per router)")


if __name__ == "__main__":
    main()
