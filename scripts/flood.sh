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
# Side by side: CONTENDERS="px-af-xdp px-kernel nginx" runs the same floods and the same
# clients against our kernel-socket backend and nginx (one worker), both on Linux's TCP in
# the px-app namespace (SYN cookies, RFC 5961 as Linux does them), pinned to the same CPU.
# Memory is the server's processes (RSS + hugetlb) and, since Linux keeps a kernel-socket
# server's connections in kernel memory no RSS shows, the machine's used memory
# (MemTotal - MemAvailable) as well, for every contender alike.
# Usage: scripts/flood.sh [SECONDS] [syn|rst|half ...]   (root; testbed addresses only)
#        FLOOD_CONFIG=FILE scripts/flood.sh ...   runs the appliance with that config
#        CONTENDERS="px-af-xdp nginx" scripts/flood.sh ...   (default: px-af-xdp)
#        FLOOD_PPS=50000 scripts/flood.sh ...   SYN and RST floods at a fixed rate (the
#        same for every contender; default: as fast as the client core sends, which
#        depends on how much of that core the server's answers cost it)
# Writes target/flood/<date>/results.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
floods=("$@")
[ ${#floods[@]} -gt 0 ] || floods=(syn rst half)
contenders=${CONTENDERS:-px-af-xdp}
. scripts/lib/bench-common.sh
[ "$(id -u)" -eq 0 ] || { echo "flood.sh: needs root (testbed, raw sockets)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "flood.sh: wrk is missing: scripts/install-test-deps.sh installs it" >&2; exit 1; }
case " $contenders " in *" nginx "*)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "flood.sh: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; } ;;
esac
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
nginx_prefix=""
addr_on() { ip -n px-app addr replace 10.99.0.1/24 dev px-app0; }
addr_off() { ip -n px-app addr del 10.99.0.1/24 dev px-app0 2>/dev/null || true; }
cleanup() {
  [ -n "$server_pid" ] && stop_server
  [ -n "$nginx_prefix" ] && rm -rf "$nginx_prefix"
  addr_off
  for a in "${srcs[@]}"; do ip -n px-client addr del "$a/24" dev px-client0 2>/dev/null || true; done
}
trap cleanup EXIT
read -r port_lo port_hi < <(ip netns exec px-client cat /proc/sys/net/ipv4/ip_local_port_range)

# Resident memory of process $1 in KiB: RSS plus its hugetlb pages (the arena pool and
# UMEM live there, which VmRSS does not count).
# For nginx, its master and its worker together.
rss_kib() {
  local p n=0 k
  for p in "$1" $(pgrep -P "$1" || true); do
    k=$(awk '/VmRSS|HugetlbPages/ {n += $2} END {print n + 0}' "/proc/$p/status" 2>/dev/null || echo 0)
    n=$((n + k))
  done
  echo "$n"
}
# The machine's used memory in KiB (kernel socket memory included).
used_kib() { awk '/MemTotal/ {t = $2} /MemAvailable/ {a = $2} END {print t - a}' /proc/meminfo; }
# Linux's TCP counters in the server's namespace (what a kernel-socket server's stack did):
# "name=value ..." and the difference of two such lines.
linux_tcp() {
  ip netns exec px-app cat /proc/net/netstat /proc/net/snmp | awk '
    $1 ~ /:$/ && !h[$1]++ { for (i = 2; i <= NF; i++) k[$1, i] = $i; next }
    $1 ~ /:$/ { for (i = 2; i <= NF; i++) if (k[$1, i] ~ /^(SyncookiesSent|SyncookiesRecv|ListenOverflows|ListenDrops|TCPChallengeACK|TCPSYNChallenge|TCPReqQFullDoCookies|TCPReqQFullDrop|ActiveOpens|PassiveOpens|EstabResets|AttemptFails|OutRsts|TCPAbortOnClose|TCPAbortOnData)$/) printf "%s=%s ", k[$1, i], $i }'
}
linux_delta() {
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " ");
    for (i = 1; i <= n; i++) { split(x[i], p, "="); split(y[i], q, "="); printf "%s=%d ", p[1], q[2] - p[2] } }'
}
# CPU ticks of process $1 and its children (nginx's worker).
tree_ticks() {
  local p n=0 k
  for p in "$1" $(pgrep -P "$1" || true); do k=$(proc_ticks "$p" 2>/dev/null || echo 0); n=$((n + k)); done
  echo "$n"
}

# wrk for $secs: prints "req/s p50 p99 errors".
load() {
  local out
  out=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c64 -d"${secs}s" --latency \
        http://10.99.0.1:8080/json 2>&1) || true  # wrk fails when it cannot connect at all
  grep -q 'Requests/sec' <<<"$out" || { printf "0 - - %s\n" "$(head -1 <<<"$out")"; return 0; }
  printf "%s %s %s %s\n" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1=="50%" {print $2}')" "$(echo "$out" | awk '$1=="99%" {print $2}')" \
    "$(echo "$out" | grep -E 'Socket errors|Non-2xx' | tr -s ' ' | tr '\n' ';' | sed 's/;$//' || true)"
}

# A counter from the appliance's exit report.
counter() { grep -o " $1=[0-9]*" "$2" | tail -1 | cut -d= -f2; }

{
  echo "# Floods on the testbed, $(date -u +%F), $(uname -r): $contenders"
  echo
  echo "One queue, server CPU $server_cpu; 64 wrk clients (/json, keep-alive) and px-flood"
  echo "share CPU $load_cpu; ${secs} s per load run. Server memory is the server's RSS plus its"
  echo "hugetlb pages (nginx: master and worker); machine memory is MemTotal - MemAvailable,"
  echo "which also counts the kernel's socket memory of a kernel-socket server."
  echo "Each flood runs against a fresh server; the appliance with ${FLOOD_CONFIG:-the default configuration}."
  [ -n "${FLOOD_CONFIG:-}" ] && { echo; echo '```toml'; cat "$FLOOD_CONFIG"; echo '```'; }
  echo
} > "$results"

start() {  # start CONTENDER LOG
  case $1 in
    px-af-xdp)
      addr_off
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
        --queues 1 --cores "$server_cpu" --ip 10.99.0.1/24 ${FLOOD_CONFIG:+--config "$FLOOD_CONFIG"} \
        --log-level info > "$2" 2>&1 & ;;
    px-kernel)
      addr_on
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend kernel \
        --listen 10.99.0.1:8080 --queues 1 --cores "$server_cpu" ${FLOOD_CONFIG:+--config "$FLOOD_CONFIG"} \
        --log-level info > "$2" 2>&1 & ;;
    nginx)
      # Room for the 100,000 held connections (the appliance's default allows a million).
      addr_on
      nginx_prefix=$(mktemp -d /tmp/px-flood-nginx.XXXX)
      sed -e "s|@WORKERS@|1|; s|@LISTEN@|10.99.0.1:8080|; s|@PREFIX@|$nginx_prefix|g" \
          -e "s|worker_connections 65536;|worker_connections 131072;|" \
          -e "s|^daemon off;|daemon off;\nworker_rlimit_nofile 140000;|" benches/peers/nginx/nginx.conf.in \
        > "$nginx_prefix/nginx.conf"
      ip netns exec px-app taskset -c "$server_cpu" "$(command -v nginx || echo /usr/sbin/nginx)" \
        -c "$nginx_prefix/nginx.conf" -p "$nginx_prefix" > "$2" 2>&1 & ;;
    *) echo "flood.sh: unknown contender $1 (px-af-xdp, px-kernel, nginx)" >&2; exit 2 ;;
  esac
  server_pid=$!
  wait_http_ready http://10.99.0.1:8080/json "$2" "$1"
}

for c in $contenders; do
for f in "${floods[@]}"; do
  log=$out_dir/$c-$f.log
  start "$c" "$log"
  rss0=$(rss_kib "$server_pid")
  used0=$(used_kib)
  ln0=$(linux_tcp)
  read -r b_rps b_p50 b_p99 b_err < <(load)
  case $f in
    syn) flood_cmd=(target/release/px-flood --target 10.99.0.1:8080 --src "$src_list" --secs "$((secs + 2))"
                    --pps "${FLOOD_PPS:-0}" syn) ;;
    rst) flood_cmd=(target/release/px-flood --target 10.99.0.1:8080 --src 10.99.0.2 --secs "$((secs + 2))" --pps "${FLOOD_PPS:-0}"
                    rst --lo "$port_lo" --hi "$port_hi") ;;
    half) # 100,000 in all, from 8 processes (a process may hold 20,000 descriptors here),
          # each with two of the source addresses.
          flood_cmd=(sh -c "for i in 0 2 4 6 8 10 12 14; do
              target/release/px-flood --target 10.99.0.1:8080 --src 10.99.0.\$((100 + i)),10.99.0.\$((101 + i)) \
                half --conns 12500 --hold $((secs + 2)) & done; wait") ;;
    *) echo "flood.sh: unknown flood $f (syn, rst, half)" >&2; exit 2 ;;
  esac
  p0=$(tree_ticks "$server_pid")
  ip netns exec px-client taskset -c "$load_cpu" "${flood_cmd[@]}" > "$out_dir/flood-$c-$f.json" 2> "$out_dir/flood-$c-$f.err" &
  flood_pid=$!
  rss_max=$rss0
  ( while kill -0 "$flood_pid" 2>/dev/null; do echo "$(rss_kib "$server_pid") $(used_kib)"; sleep 0.5; done ) > "$out_dir/rss-$c-$f.txt" &
  sampler=$!
  [ "$f" = half ] && sleep 2 # let the connections open before measuring beside them
  read -r d_rps d_p50 d_p99 d_err < <(load)
  wait "$flood_pid" || { echo "flood.sh: px-flood $f failed:" >&2; cat "$out_dir/flood-$c-$f.err" >&2; exit 1; }
  wait "$sampler" || true
  p1=$(tree_ticks "$server_pid")
  rss_max=$(awk '{print $1}' "$out_dir/rss-$c-$f.txt" | sort -n | tail -1)
  used_max=$(awk '{print $2}' "$out_dir/rss-$c-$f.txt" | sort -n | tail -1)
  read -r a_rps a_p50 a_p99 a_err < <(load)
  rss1=$(rss_kib "$server_pid")
  used1=$(used_kib)
  ln1=$(linux_tcp)
  stop_server
  [ -n "$nginx_prefix" ] && { cp "$nginx_prefix/error.log" "$out_dir/nginx-$f-error.log" 2>/dev/null || true; rm -rf "$nginx_prefix"; nginx_prefix=""; }
  {
    echo "## $f: $c"
    echo
    echo "px-flood: $(sed 's/.*/`&`/' "$out_dir/flood-$c-$f.json" | paste -sd' ')"
    echo
    echo "| 64 json clients | req/s | p50 | p99 | errors |"
    echo "|---|---|---|---|---|"
    echo "| before | $b_rps | $b_p50 | $b_p99 | ${b_err:-none} |"
    echo "| during | $d_rps | $d_p50 | $d_p99 | ${d_err:-none} |"
    echo "| after | $a_rps | $a_p50 | $a_p99 | ${a_err:-none} |"
    echo
    echo "Server memory: $((rss0 / 1024)) MiB at start, $((rss_max / 1024)) MiB max during, $((rss1 / 1024)) MiB after;"
    echo "machine memory: +$(( (used_max - used0) / 1024 )) MiB max during, +$(( (used1 - used0) / 1024 )) MiB after (from $((used0 / 1024)) MiB);"
    echo "server CPU during the flood: $(awk -v a="$p0" -v b="$p1" -v hz="$hz" 'BEGIN {printf "%.1f s", (b-a)/hz}') (its processes; softirq work is not in it)."
    case $c in px-kernel|nginx)
      echo "Linux TCP in the server's namespace during the run: $(linux_delta "$ln0" "$ln1")" ;;
    esac
    [ "$c" = nginx ] && [ -s "$out_dir/nginx-$f-error.log" ] && { echo; echo "nginx's error log (last lines):"; echo '```'; tail -3 "$out_dir/nginx-$f-error.log"; echo '```'; }
    case $c in px-*)
    echo "Counters at exit: rx_packets=$(counter rx_packets "$log") tcp_syn_cookies_sent=$(counter tcp_syn_cookies_sent "$log")" \
      "tcp_established=$(counter tcp_established "$log") tcp_reset=$(counter tcp_reset "$log")" \
      "http_head_timeouts=$(counter http_head_timeouts "$log") http_requests=$(counter http_requests "$log")" \
      "arena_chunks_free_min=$(counter arena_chunks_free_min "$log") tx_ring_full=$(counter tx_ring_full "$log")" \
      "kernel_rx_dropped=$(counter kernel_rx_dropped "$log") tcp_challenge_acks=$(counter tcp_challenge_acks "$log")" \
      "tcp_unacceptable=$(counter tcp_unacceptable "$log") tcp_syn_dropped=$(counter tcp_syn_dropped "$log")" \
      "http_rejected_408=$(counter http_rejected_408 "$log") conns_at_exit: see log" ;;
    esac
    echo
  } >> "$results"
done
done
cat "$results"
