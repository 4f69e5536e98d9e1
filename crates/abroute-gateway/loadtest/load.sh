#!/usr/bin/env bash
# The gateway's load test (docs/gateway.md, "Load"). Two gateways are measured in turn:
#   builtin  - the built-in mock upstream as `abroute serve` embeds it (called in process),
#   loopback - the standalone mock (`abroute mock`) as a real upstream over loopback HTTP;
# each at 64 connections, with one connection (the added latency), and with a writer changing
# the router 10 times a second. The standalone mock is also measured directly. CPU time per
# request of each process comes from /proc. Needs a release build and wrk
# (apt-get install -y wrk).
#
#   CARGO_TARGET_DIR=... cargo build --release -p abroute-gateway
#   crates/abroute-gateway/loadtest/load.sh [path/to/abroute] [seconds] [connections]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-target}/release/abroute}"
secs="${2:-15}"
conns="${3:-64}"
export BODY

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME URL BODY CONNS THREADS [PID...]: wrk, then CPU µs per request of each PID.
run() {
  local name=$1 url=$2 body=$3 c=$4 t=$5
  shift 5
  local before=() p out reqs
  for p in "$@"; do before+=("$(ticks "$p")"); done
  BODY="$here/$body"
  out=$(wrk -t"$t" -c"$c" -d"${secs}s" --latency -s "$here/post.lua" "$url")
  echo "=== $name (c=$c, ${secs}s)"
  echo "$out" | grep -E "Requests/sec|Latency|50%|90%|99%|Non-2xx|Socket errors|requests in"
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local i=0
  for p in "$@"; do
    awk -v a="${before[$i]}" -v b="$(ticks "$p")" -v hz="$hz" -v r="$reqs" -v n="$(tr '\0' ' ' < "/proc/$p/cmdline" | awk '{print $2}')" \
      'BEGIN { printf "  cpu %s: %.1f us/request\n", n, (b - a) / hz * 1e6 / r }'
    i=$((i + 1))
  done
}

writer() { # PATCH the router 10 times a second while the load runs; count failures.
  local end=$((SECONDS + secs)) i=0 bad=0 a code
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
  echo "  writer: $i updates, $bad failed"
}

wait_ready() {
  for _ in $(seq 100); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2
  return 1
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

"$bin" mock --listen 127.0.0.1:8081 >/dev/null 2>&1 & mock=$!; pids+=("$mock")
wait_ready http://127.0.0.1:8081/healthz
BODY="$here/body-direct-1k.json" wrk -t1 -c8 -d2s -s "$here/post.lua" http://127.0.0.1:8081/v1/chat/completions >/dev/null
run "direct to the standalone mock" http://127.0.0.1:8081/v1/chat/completions body-direct-1k.json "$conns" 2 "$mock"
run "direct to the standalone mock, one connection" http://127.0.0.1:8081/v1/chat/completions body-direct-1k.json 1 1

for mode in builtin loopback; do
  if [ "$mode" = builtin ]; then conf=gateway-builtin.toml; else conf=gateway.toml; fi
  "$bin" serve --config "$here/$conf" >/dev/null 2>&1 & gw=$!; pids+=("$gw")
  wait_ready http://127.0.0.1:8080/readyz
  # Warm up (connection pools, allocator).
  BODY="$here/body-router-1k.json" wrk -t1 -c8 -d2s -s "$here/post.lua" http://127.0.0.1:8080/v1/chat/completions >/dev/null
  procs=("$gw")
  [ "$mode" = loopback ] && procs+=("$mock")
  run "gateway ($mode mock)" http://127.0.0.1:8080/v1/chat/completions body-router-1k.json "$conns" 2 "${procs[@]}"
  run "gateway ($mode mock), one connection" http://127.0.0.1:8080/v1/chat/completions body-router-1k.json 1 1
  v0=$(curl -s http://127.0.0.1:8080/readyz | sed 's/.*"version":\([0-9]*\).*/\1/')
  writer & wpid=$!
  run "gateway ($mode mock), writer at 10/s" http://127.0.0.1:8080/v1/chat/completions body-router-1k.json "$conns" 2
  wait "$wpid"
  v1=$(curl -s http://127.0.0.1:8080/readyz | sed 's/.*"version":\([0-9]*\).*/\1/')
  echo "  config versions during the run: $v0 -> $v1"
  kill "$gw"; wait "$gw" 2>/dev/null || true
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
