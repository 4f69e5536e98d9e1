#!/usr/bin/env bash
# The gateway's soak test (docs/gateway.md, "Soak"): a steady load for a while, with the router
# changed 10 times a second, the gateway's RSS sampled every few seconds. It fails (exit 1) if
# any request failed (a non-2xx answer, a socket error, a failed router update) or if the RSS
# grew after the warm-up by more than the bound.
#
# The gateway calls the standalone mock (`abroute mock`) over loopback, so the upstream client,
# its pool and the response limits are part of what is soaked. Needs wrk and curl.
#
#   crates/abroute-gateway/loadtest/soak.sh [path/to/abroute] [seconds] [connections]
#
#   seconds       default 600 (10 minutes, by hand); .ci/run runs 40 with a debug build
#   connections   default 32
#   SOAK_PORT     the gateway's port (default 18480; the mock gets the next one)
#   SOAK_GROWTH_KB  the RSS growth allowed after the warm-up (default 8192 KiB)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-target}/release/abroute}"
secs="${2:-600}"
conns="${3:-32}"
port="${SOAK_PORT:-18480}"
mock_port=$((port + 1))
growth_kb="${SOAK_GROWTH_KB:-8192}"
# RSS every `sample` seconds; the first quarter of the run (at least one sample) is the warm-up.
sample=$(( secs >= 120 ? 5 : 2 ))
warmup=$(( secs / 4 ))

pids=()
tmp=$(mktemp -d)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 100); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "soak: not ready: $1" >&2
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

cat >"$tmp/gateway.toml" <<EOF
listen = "127.0.0.1:$port"
seed_router = true

[auth]
enabled = false

[[providers]]
name = "*"
base_url = "http://127.0.0.1:$mock_port/v1"
EOF

echo "soak: $(date -u +%Y-%m-%dT%H:%MZ), ${secs}s, $conns connections, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" mock --listen "127.0.0.1:$mock_port" >/dev/null 2>&1 & pids+=("$!")
wait_ready "http://127.0.0.1:$mock_port/healthz"
"$bin" serve --config "$tmp/gateway.toml" >/dev/null 2>&1 & gw=$!; pids+=("$gw")
wait_ready "http://127.0.0.1:$port/readyz"
base="http://127.0.0.1:$port"

# The writer: PATCH the router's weights 10 times a second for the whole run. One curl process
# (curl's `--rate`: one request after the other on one connection, since two at once may
# conflict with 409), from a config of `secs * 10` requests whose weights change every time;
# each status to a file.
for i in $(seq 0 $(( secs * 10 - 1 ))); do
  a=$((10 + (i * 7) % 60))
  v='\"variant\": {\"variant_id\": \"openai/'
  printf 'url = "%s"\nrequest = "PATCH"\nheader = "Content-Type: application/json"\n' \
    "$base/router/v1/routers/compare-frontier-models?update_mask=defaultRoute"
  printf 'data = "{\\"defaultRoute\\": {\\"route_id\\": \\"default\\", \\"variants\\": [{%sgpt-4o-mini-a\\", \\"model_id\\": \\"openai/gpt-4o-mini\\"}, \\"weight\\": %d}, {%sgpt-3.5-turbo-b\\", \\"model_id\\": \\"openai/gpt-3.5-turbo\\"}, \\"weight\\": %d}, {%sgpt-4.1-c\\", \\"model_id\\": \\"openai/gpt-4.1\\"}, \\"weight\\": 10}]}}"\n' \
    "$v" "$a" "$v" $((90 - a)) "$v"
  printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nnext\n'
done >"$tmp/writer.curl"
curl -s --rate 10/s -K "$tmp/writer.curl" >"$tmp/codes" 2>/dev/null & writer=$!

# The load: wrk for the whole run (streams and JSON answers alike go through the same path).
BODY="$here/body-router-1k.json" wrk -t2 -c"$conns" -d"${secs}s" -s "$here/post.lua" \
  "$base/v1/chat/completions" >"$tmp/wrk" 2>&1 & load=$!

# RSS samples, bounded by the run's length.
samples=()
start=$SECONDS
for _ in $(seq $(( secs / sample + 1 ))); do
  [ $((SECONDS - start)) -ge "$secs" ] && break
  sleep "$sample"
  kb=$(rss_kb "$gw")
  samples+=("$((SECONDS - start)):$kb")
done
wait "$load" || true  # checked from its output
wait "$writer" || true  # its failures are counted from the statuses

echo "soak: rss samples (s:KiB): ${samples[*]}"
grep -E "Requests/sec|requests in|Non-2xx|Socket errors" "$tmp/wrk" || true
updates=$(wc -l <"$tmp/codes")
bad_updates=$(grep -vc '^200$' "$tmp/codes" || true)
echo "soak: router updates $updates, failed $bad_updates ($(grep -v "^200$" "$tmp/codes" | sort | uniq -c | tr -s " \n" " "))"

fail=0
if grep -qE "Non-2xx|Socket errors" "$tmp/wrk"; then
  echo "soak: FAIL: failed requests" >&2; fail=1
fi
if ! grep -q "requests in" "$tmp/wrk"; then
  echo "soak: FAIL: wrk did not finish" >&2; cat "$tmp/wrk" >&2; fail=1
fi
if [ "$bad_updates" -ne 0 ] || [ "$updates" -lt $(( secs * 10 )) ]; then
  echo "soak: FAIL: router updates: $updates, $bad_updates failed" >&2; fail=1
fi
# Growth: the highest sample after the warm-up against the highest one up to it.
warm=0; after=0
for s in "${samples[@]}"; do
  t=${s%%:*}; kb=${s##*:}
  if [ "$t" -le "$warmup" ] || [ "$warm" -eq 0 ]; then
    [ "$kb" -gt "$warm" ] && warm=$kb
  else
    [ "$kb" -gt "$after" ] && after=$kb
  fi
done
echo "soak: rss at warm-up ${warm} KiB, highest after ${after} KiB (bound +${growth_kb} KiB)"
if [ "$after" -gt $(( warm + growth_kb )) ]; then
  echo "soak: FAIL: memory grew after the warm-up" >&2; fail=1
fi
[ "$fail" -eq 0 ] && echo "soak: ok"
exit "$fail"
