#!/usr/bin/env bash
# Floods over AF_XDP on the testbed (issue #14, item 4). The appliance serves on one queue
# (CPU $SERVER_CPU); 64 keep-alive wrk clients fetch /json from px-client (CPU $LOAD_CPU)
# while px-flood, on the same client CPU, sends as fast as it can:
#   syn   SYNs with options from 16 source addresses and random ports (answered with
#         cookies once the SYN backlog is full; the client kernel RSTs every SYN-ACK);
#   rst   RSTs, ACKs, RST+ACKs and FIN+ACKs with random numbers across the legitimate
#         clients' port range (RFC 5961: none may reset a connection);
#   half  100,000 connections opened and abandoned half-way through a request head
#         (held silent until the appliance's header timeout answers 408).
# Per flood, a fresh appliance: wrk before (baseline), during, and after the flood; the
# appliance's RSS sampled every 0.5 s; its counters at exit. Clients and flood share the
# client CPU, so a lower req/s during a flood can be the client's loss as much as the
# server's: the server's own CPU per request and its counters tell them apart.
# Usage: scripts/flood.sh [SECONDS] [syn|rst|half ...]   (root; testbed addresses only)
#        FLOOD_CONFIG=FILE scripts/flood.sh ...   runs the appliance with that config
# Writes target/flood/<date>/results.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
floods=("$@")
[ ${#floods[@]} -gt 0 ] || floods=(syn rst half)
. scripts/lib/bench-common.sh
[ "$(id -u)" -eq 0 ] || { echo "flood.sh: needs root (testbed, raw sockets)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "flood.sh: wrk is missing: scripts/install-test-deps.sh installs it" >&2; exit 1; }
cargo build --release -q -p px-apps -p px-flood
scripts/testbed.sh up --queues 1 >/dev/null
out_dir=target/flood/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out_dir"
results=$out_dir/results.md

# 16 more addresses for the client (the flood's sources; the client kernel answers ARP
# for them and RSTs the SYN-ACKs sent to them, as a real client's would).
srcs=()
for i in $(seq 100 115); do
  ip -n px-client addr add "10.99.0.$i/24" dev px-client0 2>/dev/null || true
  srcs+=("10.99.0.$i")
done
src_list=$(IFS=,; echo "${srcs[*]}")
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && stop_server
  for a in "${srcs[@]}"; do ip -n px-client addr del "$a/24" dev px-client0 2>/dev/null || true; done
}
trap cleanup EXIT
read -r port_lo port_hi < <(ip netns exec px-client cat /proc/sys/net/ipv4/ip_local_port_range)

# Resident memory of process $1 in KiB: RSS plus its hugetlb pages (the arena pool and
# UMEM live there, which VmRSS does not count).
rss_kib() { awk '/VmRSS|HugetlbPages/ {n += $2} END {print n + 0}' "/proc/$1/status" 2>/dev/null || echo 0; }

# wrk for $secs: prints "req/s p50 p99 errors".
load() {
  local out
  out=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c64 -d"${secs}s" --latency \
        http://10.99.0.1:8080/json 2>&1)
  printf "%s %s %s %s\n" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" "$(echo "$out" | awk '$1=="99%" {print $2}')" \
    "$(echo "$out" | grep -E 'Socket errors|Non-2xx' | tr -s ' ' | tr '\n' ';' | sed 's/;$//' || true)"
}

# A counter from the appliance's exit report.
counter() { grep -o " $1=[0-9]*" "$2" | tail -1 | cut -d= -f2; }

{
  echo "# Floods over AF_XDP, $(date -u +%F), $(uname -r)"
  echo
  echo "One queue, server CPU $server_cpu; 64 wrk clients (/json, keep-alive) and px-flood"
  echo "share CPU $load_cpu; ${secs} s per load run. Memory is the appliance's RSS plus its hugetlb pages."
  echo "Each flood runs against a fresh appliance with ${FLOOD_CONFIG:-the default configuration}."
  [ -n "${FLOOD_CONFIG:-}" ] && { echo; echo '```toml'; cat "$FLOOD_CONFIG"; echo '```'; }
  echo
} > "$results"

for f in "${floods[@]}"; do
  log=$out_dir/appliance-$f.log
  ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
    --queues 1 --cores "$server_cpu" --ip 10.99.0.1/24 ${FLOOD_CONFIG:+--config "$FLOOD_CONFIG"} \
    --log-level info > "$log" 2>&1 &
  server_pid=$!
  wait_http_ready http://10.99.0.1:8080/json "$log" px-appliance
  rss0=$(rss_kib "$server_pid")
  read -r b_rps b_p50 b_p99 b_err < <(load)
  case $f in
    syn) flood_cmd=(target/release/px-flood --target 10.99.0.1:8080 --src "$src_list" --secs "$((secs + 2))" syn) ;;
    rst) flood_cmd=(target/release/px-flood --target 10.99.0.1:8080 --src 10.99.0.2 --secs "$((secs + 2))"
                    rst --lo "$port_lo" --hi "$port_hi") ;;
    half) # 100,000 in all, from 8 processes (a process may hold 20,000 descriptors here),
          # each with two of the source addresses.
          flood_cmd=(sh -c "for i in 0 2 4 6 8 10 12 14; do
              target/release/px-flood --target 10.99.0.1:8080 --src 10.99.0.\$((100 + i)),10.99.0.\$((101 + i)) \
                half --conns 12500 --hold $((secs + 2)) & done; wait") ;;
    *) echo "flood.sh: unknown flood $f (syn, rst, half)" >&2; exit 2 ;;
  esac
  p0=$(proc_ticks "$server_pid")
  ip netns exec px-client taskset -c "$load_cpu" "${flood_cmd[@]}" > "$out_dir/flood-$f.json" 2> "$out_dir/flood-$f.err" &
  flood_pid=$!
  rss_max=$rss0
  ( while kill -0 "$flood_pid" 2>/dev/null; do rss_kib "$server_pid"; sleep 0.5; done ) > "$out_dir/rss-$f.txt" &
  sampler=$!
  [ "$f" = half ] && sleep 2 # let the connections open before measuring beside them
  read -r d_rps d_p50 d_p99 d_err < <(load)
  wait "$flood_pid" || { echo "flood.sh: px-flood $f failed:" >&2; cat "$out_dir/flood-$f.err" >&2; exit 1; }
  wait "$sampler" || true
  p1=$(proc_ticks "$server_pid")
  rss_max=$(sort -n "$out_dir/rss-$f.txt" | tail -1)
  read -r a_rps a_p50 a_p99 a_err < <(load)
  rss1=$(rss_kib "$server_pid")
  stop_server
  {
    echo "## $f"
    echo
    echo "px-flood: $(sed 's/.*/`&`/' "$out_dir/flood-$f.json" | paste -sd' ')"
    echo
    echo "| 64 json clients | req/s | p50 | p99 | errors |"
    echo "|---|---|---|---|---|"
    echo "| before | $b_rps | $b_p50 | $b_p99 | ${b_err:-none} |"
    echo "| during | $d_rps | $d_p50 | $d_p99 | ${d_err:-none} |"
    echo "| after | $a_rps | $a_p50 | $a_p99 | ${a_err:-none} |"
    echo
    echo "Appliance memory: $((rss0 / 1024)) MiB at start, $((rss_max / 1024)) MiB max during, $((rss1 / 1024)) MiB after;"
    echo "server CPU during the flood: $(awk -v a="$p0" -v b="$p1" -v hz="$hz" 'BEGIN {printf "%.1f s", (b-a)/hz}')."
    echo "Counters at exit: rx_packets=$(counter rx_packets "$log") tcp_syn_cookies_sent=$(counter tcp_syn_cookies_sent "$log")" \
      "tcp_established=$(counter tcp_established "$log") tcp_reset=$(counter tcp_reset "$log")" \
      "http_head_timeouts=$(counter http_head_timeouts "$log") http_requests=$(counter http_requests "$log")" \
      "arena_chunks_free_min=$(counter arena_chunks_free_min "$log") tx_ring_full=$(counter tx_ring_full "$log")" \
      "kernel_rx_dropped=$(counter kernel_rx_dropped "$log") tcp_challenge_acks=$(counter tcp_challenge_acks "$log")" \
      "tcp_unacceptable=$(counter tcp_unacceptable "$log") tcp_syn_dropped=$(counter tcp_syn_dropped "$log")" \
      "http_rejected_408=$(counter http_rejected_408 "$log") conns_at_exit: see log"
    echo
  } >> "$results"
done
cat "$results"
