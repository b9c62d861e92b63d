#!/usr/bin/env bash
# Kernel-backend throughput on this machine: server pinned to one CPU, wrk to another.
# Prints req/s, latency, and CPU per request (server process and whole machine).
# Usage: scripts/bench-kernel.sh [seconds]   (env: SERVER_CPU=1 LOAD_CPU=0 PORT=18080)
# Loopback only. This is a benchmark, not a test: it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
. scripts/lib/bench-common.sh
port=${PORT:-18080}
command -v wrk >/dev/null || { echo "bench-kernel: wrk is not installed (scripts/install-test-deps.sh)" >&2; exit 1; }
cargo build --release -q
target/release/px-appliance --backend kernel --listen 127.0.0.1:$port --queues 1 --cores "$server_cpu" \
  --log-level warn > /tmp/px-bench.out &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
wait_ready /tmp/px-bench.out


run() {
  local name=$1 conns=$2 depth=$3 path=$4
  local p0 m0 p1 m1 out reqs rps
  p0=$(proc_ticks "$pid"); m0=$(machine_ticks)
  out=$(taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${secs}s" --latency -s benches/wrk/pipeline.lua \
        "http://127.0.0.1:$port$path" -- "$depth")
  p1=$(proc_ticks "$pid"); m1=$(machine_ticks)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  errs=$(echo "$out" | grep -E "Socket errors|Non-2xx" || true)
  printf "%-28s c=%-4s depth=%-3s %12s req/s  p50 %-8s p99 %-8s server %6.2f us/req  machine %6.2f us/req %s\n" \
    "$name" "$conns" "$depth" "$rps" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" "$(echo "$out" | awk '$1=="99%" {print $2}')" \
    "$(us_per "$p0" "$p1" "$reqs")" "$(us_per "$m0" "$m1" "$reqs")" "$errs"
}

echo "px-appliance kernel backend, server CPU $server_cpu, wrk CPU $load_cpu, ${secs}s per run, $(uname -r)"
run "plaintext pipelined x16" 256 16 /plaintext
run "json keep-alive" 64 1 /json
run "json keep-alive" 256 1 /json
