#!/usr/bin/env bash
# px-appliance over AF_XDP (our TCP engine) against px-appliance over kernel sockets, on
# the same testbed link, same cores: server on SERVER_CPU (one queue), wrk in px-client
# on LOAD_CPU. Prints req/s, p50/p99, CPU per request of the server process and of the
# whole machine (on veth the receive work runs in the sender's softirq, so both matter).
# Usage: scripts/bench-af-xdp.sh [SECONDS]   (root; testbed addresses only; asserts nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
. scripts/lib/bench-common.sh
[ "$(id -u)" -eq 0 ] || { echo "bench-af-xdp: needs root (testbed)" >&2; exit 1; }
cargo build --release -q
scripts/testbed.sh up --queues 1 --link fair >/dev/null

run() {
  local label=$1 pid=$2 conns=$3 depth=$4 path=$5
  local p0 m0 p1 m1 out reqs
  p0=$(proc_ticks "$pid"); m0=$(machine_ticks)
  out=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${secs}s" --latency \
        -s benches/wrk/pipeline.lua "http://10.99.0.1:8080$path" -- "$depth")
  p1=$(proc_ticks "$pid"); m1=$(machine_ticks)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  printf "%-22s %-26s c=%-4s x%-3s %10s req/s  p50 %-8s p99 %-8s server %5.2f us/req  machine %5.2f us/req %s\n" \
    "$label" "$path" "$conns" "$depth" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" "$(echo "$out" | awk '$1=="99%" {print $2}')" \
    "$(us_per "$p0" "$p1" "$reqs")" "$(us_per "$m0" "$m1" "$reqs")" \
    "$(echo "$out" | grep -E 'Socket errors|Non-2xx' | tr '\n' ' ' || true)"
}

suite() {
  local label=$1 pid=$2
  run "$label" "$pid" 256 16 /plaintext
  run "$label" "$pid" 64 1 /json
  run "$label" "$pid" 256 1 /json
}

echo "testbed veth, 1 queue, server CPU $server_cpu, wrk CPU $load_cpu, ${secs}s per run, $(uname -r), $(date -u +%F)"
ip netns exec px-app target/release/px-appliance --backend af-xdp --iface px-app0 --queues 1 --cores "$server_cpu" \
  --ip 10.99.0.1/24 --log-level warn > /tmp/px-bench-xdp.out 2>&1 &
pid=$!
wait_ready /tmp/px-bench-xdp.out
suite "af-xdp (our TCP)" "$pid"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

ip -n px-app addr add 10.99.0.1/24 dev px-app0
trap 'ip -n px-app addr del 10.99.0.1/24 dev px-app0 2>/dev/null || true' EXIT
ip netns exec px-app target/release/px-appliance --backend kernel --listen 10.99.0.1:8080 --queues 1 \
  --cores "$server_cpu" --log-level warn > /tmp/px-bench-kern.out 2>&1 &
pid=$!
wait_ready /tmp/px-bench-kern.out
suite "kernel sockets" "$pid"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
