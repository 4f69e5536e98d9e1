#!/usr/bin/env bash
# The gateway's load test (docs/gateway.md, "Load"): wrk against the standalone mock upstream
# directly, then through the gateway, then through the gateway while a writer changes the
# router 10 times a second. Needs a release build and wrk (apt-get install -y wrk).
#
#   CARGO_TARGET_DIR=... cargo build --release -p abroute-gateway
#   crates/abroute-gateway/loadtest/load.sh [path/to/abroute] [seconds] [connections]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-target}/release/abroute}"
secs="${2:-15}"
conns="${3:-64}"
threads="${THREADS:-2}"
export BODY

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$bin" mock --listen 127.0.0.1:8081 >/dev/null 2>&1 & pids+=($!)
"$bin" serve --config "$here/gateway.toml" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 50); do
  curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:8081/healthz >/dev/null 2>&1 && break
  sleep 0.1
done

run() { # name url body conns
  BODY="$here/$3"
  echo "=== $1 (c=$4, ${secs}s)"
  wrk -t"${THREADS:-$threads}" -c"$4" -d"${secs}s" --latency -s "$here/post.lua" "$2" | grep -E "Requests/sec|Latency|50%|75%|90%|99%|Non-2xx|Socket errors|requests in"
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Warm up both paths (connection pools, allocator).
BODY="$here/body-router-1k.json" wrk -t1 -c8 -d2s -s "$here/post.lua" http://127.0.0.1:8080/v1/chat/completions >/dev/null

run "direct to the mock upstream" http://127.0.0.1:8081/v1/chat/completions body-direct-1k.json "$conns"
run "through the gateway" http://127.0.0.1:8080/v1/chat/completions body-router-1k.json "$conns"
# One connection: each request alone, so the difference is the latency the gateway adds.
THREADS=1 run "direct to the mock upstream, one connection" http://127.0.0.1:8081/v1/chat/completions body-direct-1k.json 1
THREADS=1 run "through the gateway, one connection" http://127.0.0.1:8080/v1/chat/completions body-router-1k.json 1

# A writer: PATCH the router 10 times a second while the load runs; count its failures too.
writer() {
  local end=$((SECONDS + secs)) i=0 bad=0 a
  while [ "$SECONDS" -lt "$end" ]; do
    a=$((10 + (i * 7) % 60)); i=$((i + 1))
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH \
      "http://127.0.0.1:8080/router/v1/routers/compare-frontier-models?update_mask=defaultRoute" \
      -H 'Content-Type: application/json' --data "{\"defaultRoute\": {\"route_id\": \"default\", \"variants\": [
        {\"variant\": {\"variant_id\": \"openai/gpt-4o-mini-a\", \"model_id\": \"openai/gpt-4o-mini\"}, \"weight\": $a},
        {\"variant\": {\"variant_id\": \"openai/gpt-3.5-turbo-b\", \"model_id\": \"openai/gpt-3.5-turbo\"}, \"weight\": $((90 - a))},
        {\"variant\": {\"variant_id\": \"openai/gpt-4.1-c\", \"model_id\": \"openai/gpt-4.1\"}, \"weight\": 10}]}}")
    [ "$code" = 200 ] || bad=$((bad + 1))
    sleep 0.1
  done
  echo "writer: $i updates, $bad failed"
}
v0=$(curl -s http://127.0.0.1:8080/readyz | sed 's/.*"version":\([0-9]*\).*/\1/')
writer & wpid=$!
run "through the gateway, writer at 10/s" http://127.0.0.1:8080/v1/chat/completions body-router-1k.json "$conns"
wait "$wpid"
v1=$(curl -s http://127.0.0.1:8080/readyz | sed 's/.*"version":\([0-9]*\).*/\1/')
echo "config versions during the run: $v0 -> $v1"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
