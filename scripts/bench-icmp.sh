#!/usr/bin/env bash
# Packets per second for ICMP echo on the testbed: px-appliance (AF_XDP, one queue
# pinned to SERVER_CPU) against the px-app kernel answering the same flood on the same
# link. The load is `ping -f -l PRELOAD` from px-client pinned to LOAD_CPU.
# Reports echo replies/s, the appliance's CPU per packet (its process), and the whole
# machine's CPU per packet (on veth the receive side runs in the sender's softirq).
# Usage: scripts/bench-icmp.sh [COUNT]   (env: SERVER_CPU=1 LOAD_CPU=0 PRELOAD=64)
# This is a benchmark, not a test: it asserts nothing. Testbed addresses only.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-300000}
. scripts/lib/bench-common.sh
preload=${PRELOAD:-64}
[ "$(id -u)" -eq 0 ] || { echo "bench-icmp: needs root (testbed)" >&2; exit 1; }
cargo build --release -q
scripts/testbed.sh up --queues 1 >/dev/null

flood() {
  ip netns exec px-client taskset -c "$load_cpu" ping -f -q -l "$preload" -c "$count" -W 1 10.99.0.1 2>&1
}

report() {
  local name=$1 out=$2 t0=$3 t1=$4 m0=$5 m1=$6 p0=${7:-0} p1=${8:-0}
  local recv secs
  recv=$(echo "$out" | awk -F', ' '/received/ {split($2, a, " "); print a[1]}')
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print (b-a)/1e9}')
  awk -v n="$name" -v r="$recv" -v s="$secs" -v m=$((m1-m0)) -v p=$((p1-p0)) -v hz="$hz" 'BEGIN {
    printf "%-34s %9d replies in %6.2fs = %9.0f pps   machine %6.2f us/pkt", n, r, s, r/s, m/hz*1e6/r
    if (p > 0) printf "   server process %6.2f us/pkt", p/hz*1e6/r
    printf "\n" }'
}

echo "ICMP echo flood, ping -f -l $preload -c $count, server CPU $server_cpu, load CPU $load_cpu, $(uname -r)"

# 1. px-appliance over AF_XDP.
ip netns exec px-app target/release/px-appliance --backend af-xdp --iface px-app0 --queues 1 \
  --cores "$server_cpu" --ip 10.99.0.1/24 --log-level warn > /tmp/px-bench-icmp.out 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' EXIT
wait_ready /tmp/px-bench-icmp.out
ip netns exec px-client ping -c 1 -W 1 10.99.0.1 >/dev/null
p0=$(proc_ticks "$pid"); m0=$(machine_ticks); t0=$(date +%s%N)
out=$(flood)
t1=$(date +%s%N); m1=$(machine_ticks); p1=$(proc_ticks "$pid")
report "px-appliance af-xdp (1 queue)" "$out" "$t0" "$t1" "$m0" "$m1" "$p0" "$p1"
kill -TERM $pid; wait $pid 2>/dev/null || true
trap - EXIT

# 2. The px-app kernel answering on the same link.
ip -n px-app addr add 10.99.0.1/24 dev px-app0
trap 'ip -n px-app addr del 10.99.0.1/24 dev px-app0 2>/dev/null || true' EXIT
ip netns exec px-client ping -c 1 -W 1 10.99.0.1 >/dev/null
m0=$(machine_ticks); t0=$(date +%s%N)
out=$(flood)
t1=$(date +%s%N); m1=$(machine_ticks)
report "Linux kernel (same link)" "$out" "$t0" "$t1" "$m0" "$m1"
