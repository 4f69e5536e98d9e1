#!/usr/bin/env bash
# Instructions per gateway request, under callgrind: immune to the shared machine's noise where
# wrk's throughput is not (docs/benchmarks.md). Runs `abroute serve --config CONF` under
# valgrind twice, SECONDS each: once with `wrk -t1 -c4` posting the 1 KB router body, once
# without requests; prints (Ir(load) - Ir(idle)) / requests. CONF must listen on 127.0.0.1:8080
# (the load-test configs do); for gateway.toml, start `abroute mock --listen 127.0.0.1:8081`
# first.
#
#   crates/abroute-gateway/loadtest/callgrind.sh BIN [CONF] [SECONDS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$1"
conf="${2:-$here/gateway-builtin.toml}"
secs="${3:-15}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run NAME LOAD: one run under callgrind; prints its total instruction count.
run() {
  local name=$1 load=$2 gw
  valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.out" "$bin" serve --config "$conf" \
    >/dev/null 2>"$tmp/$name.err" & gw=$!
  for _ in $(seq 600); do
    curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
  if [ "$load" = yes ]; then
    BODY="$here/body-router-1k.json" wrk -t1 -c4 -d"${secs}s" -s "$here/post.lua" \
      http://127.0.0.1:8080/v1/chat/completions >"$tmp/wrk"
  else
    sleep "$secs"
  fi
  kill -TERM "$gw"
  wait "$gw" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$tmp/$name.out"
}

idle=$(run idle no)
load=$(run load yes)
reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk")
grep -E "Non-2xx|Socket errors" "$tmp/wrk" || true
echo "$(basename "$conf"): $reqs requests; Ir $load with them, $idle without:" \
  "$(( (load - idle) / reqs )) instructions per request"
