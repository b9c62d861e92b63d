#!/usr/bin/env bash
# The side-by-side benchmark harness (issue #5): every contender in the px-app namespace
# pinned to the same server CPU, driven from px-client by the same load generators pinned
# to the load CPU, over the same veth link; results in benches/results/.
#
#   scripts/bench.sh            full run, 3 rounds: contenders px-af-xdp px-kernel nginx
#                               may-minihttp actix xitca; plaintext (pipelined x16) and
#                               json at 16/64/256/1024 connections; fixed-rate latency at
#                               25/50/80 % of each contender's json peak; connection
#                               scaling at 1k/10k/50k open connections (~20 min a round)
#   scripts/bench.sh --quick    one round, one concurrency (64), px-af-xdp and nginx,
#                               short runs (under 60 s; .ci/run runs it so the harness
#                               cannot rot), and one database workload for px-af-xdp
#
# Rounds: each round runs every contender through every workload, the contenders in an
# order rotated by one each round (interleaved, never all runs of one then the next);
# results.md shows the median of the rounds with min–max. Link: the testbed's link
# model (scripts/testbed.sh --link; fair by default, docs/operations.md says why).
# Every run also records, per request, px-client0's packets and bytes in each
# direction, the server CPU's total busy time (the kernel's receive work included) and,
# for px-appliance, the loop's own work time (admin /stats: busy turns only).
#   scripts/bench.sh --db-only  only the TechEmpower database workloads (below)
#
# Database workloads (issue #11): db, queries (20), fortunes, updates (20) at
# --db-conns connections, for the contenders that have them: px-af-xdp, px-kernel,
# actix (tokio-postgres) and xitca (xitca-web + xitca-postgres); px-af-xdp-spin0 (the
# AF_XDP build with af_xdp.idle_spin_us = 0), px-af-xdp-nobusy (af_xdp.busy_poll = false) and px-dpdk (the DPDK backend on a
# net_af_packet port; built with --features dpdk) can be added with --contenders. PostgreSQL is
# scripts/db.sh's cluster, reached by every contender at 10.99.0.2:5432 (its relay in
# px-client) with one connection per server core, pinned with its relay to the load
# CPU (the server's CPU stays the server's); the database's CPU per request is
# recorded beside the server's.
#
# Options: --contenders "a b" --conns "16 64" --secs N --scale "1000 10000" --out DIR
#          --db-conns "64 256" --no-db
#          --rounds N (default 3) --link fair|softirq|raw
#          --readme (put the table into README.md between the bench markers)
# Env: SERVER_CPU (default 1), LOAD_CPU (default 0).
# Load generators: wrk (closed loop, peak throughput; benches/wrk/pipeline.lua prints
# p50/p99/p99.9 as JSON) and px-load (benches/loadgen: open loop at a fixed rate, latency
# from each request's scheduled time, i.e. corrected for coordinated omission).
# Root only (testbed); only the testbed's addresses are loaded. Asserts nothing about
# speed: it measures and writes the figures down.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

quick=0 readme=0 rounds=3 link=fair
contenders="px-af-xdp px-kernel nginx may-minihttp actix xitca"
conns="16 64 256 1024"
secs=10
scale="1000 10000 50000"
fixed="25 50 80"
out=""
db_conns="64 256"
db_workloads="db queries20 fortunes updates20"
db_contenders="px-af-xdp px-af-xdp-spin0 px-dpdk px-kernel actix xitca"
http=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; rounds=1; contenders="px-af-xdp nginx"; conns="64"; secs=4; scale=""; fixed="50"
             db_conns="64"; db_workloads="queries20"; db_contenders="px-af-xdp" ;;
    --db-only) http=0; contenders="px-af-xdp px-kernel actix xitca" ;;
    --no-db) db_conns="" ;;
    --db-conns) db_conns=$2; shift ;;
    --contenders) contenders=$2; shift ;;
    --conns) conns=$2; shift ;;
    --secs) secs=$2; shift ;;
    --scale) scale=$2; shift ;;
    --out) out=$2; shift ;;
    --readme) readme=1 ;;
    --rounds) rounds=$2; shift ;;
    --link) link=$2; shift ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: needs root (it runs the contenders in the veth testbed)" >&2; exit 1; }
for t in wrk curl python3 ip taskset; do
  command -v "$t" >/dev/null || { echo "bench.sh: $t is not installed (scripts/install-test-deps.sh installs it)" >&2; exit 1; }
done
case " $contenders " in *" nginx "*)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "bench.sh: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; } ;;
esac

# xitca's peer serves nothing until its database pool is up: without the database it is
# left out (it has no HTTP-only mode).
if [ -z "$db_conns" ] && [[ " $contenders " == *" xitca "* ]]; then
  contenders=$(echo " $contenders " | sed 's/ xitca / /; s/^ //; s/ $//')
  echo "bench.sh: xitca left out (--no-db: it serves only with its database)" >&2
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
stamp=$(date -u +%Y-%m-%dT%H%MZ)
[ -n "$out" ] || { [ $quick -eq 1 ] && out=benches/results/quick || out=benches/results/$stamp; }
mkdir -p "$out"
runs=$out/runs.jsonl
: > "$runs"
log() { echo "bench: $*" >&2; }

log "building (release)"
case " $contenders " in
  # px-dpdk needs the DPDK backend compiled in (it serves AF_XDP as before as well).
  *" px-dpdk "*) cargo build --release -q -p px-apps -p px-load --features px-apps/dpdk ;;
  *) cargo build --release -q -p px-apps -p px-load ;;
esac
for c in $contenders; do
  case $c in may-minihttp|actix|xitca)
    cargo build --release -q --manifest-path "benches/peers/$c/Cargo.toml" ;;
  esac
done
ADDR=10.99.0.1 PORT=8080
scripts/testbed.sh up --queues 1 --link "$link" >/dev/null
DB_HOST=10.99.0.2 DB_PORT=5432
if [ -n "$db_conns" ]; then
  scripts/db.sh up >/dev/null  # after the testbed: its relay lives in px-client
  # Pin the database (postmaster, its backends, the relay) to the load CPU.
  for p in $(pgrep -u postgres -x postgres) $(pgrep -f "socat TCP-LISTEN:$DB_PORT,bind=$DB_HOST"); do
    taskset -pc "$load_cpu" "$p" >/dev/null
  done
  printf '[db]\naddress = "%s:%s"\nconnections_per_core = 1\n' "$DB_HOST" "$DB_PORT" > "$out/px-db.toml"
fi
# Room for 50k client connections and the servers' descriptors.
ip netns exec px-client sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
ip netns exec px-client sysctl -qw net.ipv4.tcp_tw_reuse=1
# As many descriptors as allowed (kernel-socket servers need one per connection; a
# sandbox's hard limit caps what they can hold in the scaling run, and the table says so).
ulimit -n "$(ulimit -Hn)"

cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
cat > "$out/machine.json" <<EOF
{"date":"$(date -u +%FT%TZ)","commit":"$commit","kernel":"$(uname -r)","cpus":$(nproc),"cpu_model":"${cpu_model:-unknown}","mem_gib":$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo),"server_cpu":$server_cpu,"fd_limit":$(ulimit -Hn),"load_cpu":$load_cpu,"link":"veth testbed (scripts/testbed.sh), 1 queue, link model $link","link_model":"$link","rounds":$rounds,"quick":$quick,"secs":$secs}
EOF

# ---- contenders ------------------------------------------------------------------------
addr_on() { ip -n px-app addr replace "$ADDR/24" dev px-app0; }
addr_off() { ip -n px-app addr del "$ADDR/24" dev px-app0 2>/dev/null || true; }
trap 'addr_off; [ -n "${server_pid:-}" ] && kill -KILL "$server_pid" 2>/dev/null; true' EXIT

nginx_prefix=""
px_db=()
[ -n "$db_conns" ] && px_db=(--config "$out/px-db.toml")
start() {
  local c=$1 logf=$out/$1.log
  case $c in
    px-af-xdp)
      addr_off
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
        --queues 1 --cores "$server_cpu" --ip "$ADDR/24" --log-level warn "${px_db[@]}" > "$logf" 2>&1 & ;;
    px-af-xdp-spin0)
      # The same, without the idle spin (af_xdp.idle_spin_us = 0): the loop sleeps in
      # poll(2) as soon as a turn finds nothing even when frames come close together.
      addr_off
      { [ -n "$db_conns" ] && cat "$out/px-db.toml"; printf '[af_xdp]\nidle_spin_us = 0\n'; } > "$out/px-spin0.toml"
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
        --queues 1 --cores "$server_cpu" --ip "$ADDR/24" --log-level warn --config "$out/px-spin0.toml" > "$logf" 2>&1 & ;;
    px-af-xdp-nobusy)
      # The same without the kernel's preferred busy polling (af_xdp.busy_poll = false):
      # adaptive polling alone, every frame taken by the device's NAPI thread or softirq.
      addr_off
      { [ -n "$db_conns" ] && cat "$out/px-db.toml"; printf '[af_xdp]\nbusy_poll = false\n'; } > "$out/px-nobusy.toml"
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
        --queues 1 --cores "$server_cpu" --ip "$ADDR/24" --log-level warn --config "$out/px-nobusy.toml" > "$logf" 2>&1 & ;;
    px-af-xdp-spin)
      # The same, with af_xdp.polling = "spin": the loop never sleeps (the adaptive
      # default's reference for latency and CPU at partial load).
      addr_off
      { [ -n "$db_conns" ] && cat "$out/px-db.toml"; printf '[af_xdp]\npolling = "spin"\n'; } > "$out/px-spin.toml"
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
        --queues 1 --cores "$server_cpu" --ip "$ADDR/24" --log-level warn --config "$out/px-spin.toml" > "$logf" 2>&1 & ;;
    px-dpdk)
      # The DPDK backend on a virtual port: net_af_packet on px-app0 (a PACKET_MMAP
      # socket in the kernel, not a NIC's rings: see docs/dpdk.md before reading much
      # into it).
      addr_off
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend dpdk \
        --dpdk-args "--vdev net_af_packet0,iface=px-app0,qpairs=1" \
        --queues 1 --cores "$server_cpu" --ip "$ADDR/24" --log-level warn "${px_db[@]}" > "$logf" 2>&1 & ;;
    px-kernel)
      addr_on
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend kernel \
        --listen "$ADDR:$PORT" --queues 1 --cores "$server_cpu" --log-level warn "${px_db[@]}" > "$logf" 2>&1 & ;;
    nginx)
      addr_on
      nginx_prefix=$(mktemp -d /tmp/px-bench-nginx.XXXX)
      sed -e "s|@WORKERS@|1|; s|@LISTEN@|$ADDR:$PORT|; s|@PREFIX@|$nginx_prefix|g" benches/peers/nginx/nginx.conf.in \
        > "$nginx_prefix/nginx.conf"
      ip netns exec px-app taskset -c "$server_cpu" "$(command -v nginx || echo /usr/sbin/nginx)" \
        -c "$nginx_prefix/nginx.conf" -p "$nginx_prefix" > "$logf" 2>&1 & ;;
    may-minihttp)
      addr_on
      ip netns exec px-app taskset -c "$server_cpu" benches/peers/may-minihttp/target/release/peer-may-minihttp \
        "$ADDR:$PORT" > "$logf" 2>&1 & ;;
    actix)
      addr_on
      ip netns exec px-app taskset -c "$server_cpu" benches/peers/actix/target/release/peer-actix \
        "$ADDR:$PORT" 1 ${db_conns:+"host=$DB_HOST port=$DB_PORT user=benchmarkdbuser password=benchmarkdbpass dbname=hello_world"} \
        > "$logf" 2>&1 & ;;
    xitca)
      addr_on
      ip netns exec px-app taskset -c "$server_cpu" benches/peers/xitca/target/release/peer-xitca \
        "$ADDR:$PORT" 1 "postgres://benchmarkdbuser:benchmarkdbpass@$DB_HOST:$DB_PORT/hello_world" > "$logf" 2>&1 & ;;
    *) echo "bench.sh: unknown contender $c" >&2; exit 2 ;;
  esac
  server_pid=$!
  # Ready = it answers /plaintext with 200 from the client side (10 s at most).
  wait_http_ready "http://$ADDR:$PORT/plaintext" "$logf" "bench.sh: $c"
}

stop() {
  stop_server
  [ -n "$nginx_prefix" ] && rm -rf "$nginx_prefix" && nginx_prefix=""
  return 0
}

# The server's process tree (nginx: master and workers).
tree_pids() { local p=$1; echo "$p"; for k in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$k"; done; }
tree_ticks() { local t=0; for p in $(tree_pids "$1"); do t=$((t + $(proc_ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }
tree_kb() { local k=0; for p in $(tree_pids "$1"); do k=$((k + $(awk -v f="$2:" '$1==f {print $2}' /proc/"$p"/status 2>/dev/null || echo 0))); done; echo "$k"; }

# What a run is measured by, read before and after it: the server's process-tree CPU
# ticks, the machine's, the server CPU's own (everything that ran on it: the server, and
# the kernel's receive work for it: on the fair link its NAPI thread), px-client0's packet
# and byte counters, and
# px-appliance's loop work time (its admin /stats; null for the peers), the load CPU's
# ticks and the wall clock.
snap() {
  local st loop
  st=$(ip netns exec px-client cat /sys/class/net/px-client0/statistics/{rx_packets,rx_bytes,tx_packets,tx_bytes} | tr '\n' ' ')
  loop=$(ip netns exec px-app curl -s --max-time 1 http://127.0.0.1:9180/stats 2>/dev/null \
    | python3 -c 'import json,sys; q=json.load(sys.stdin)["queues"]; print(sum(x["loop"]["busy_ns"] for x in q))' 2>/dev/null || echo null)
  echo "$(tree_ticks "$server_pid") $(machine_ticks) $(cpu_ticks "$server_cpu") $st $loop $(cpu_ticks "$load_cpu") $(date +%s%N)"
}

# record CONTENDER MODE WORKLOAD CONNS EXTRA_JSON TOOL_JSON SNAP_BEFORE SNAP_AFTER
record() {
  local c=$1 mode=$2 wl=$3 n=$4 extra=$5 json=$6 s0=$7 s1=$8
  [ -n "$json" ] || json='{"failed":1}'
  python3 - "$c" "$mode" "$wl" "$n" "$extra" "$json" "$s0" "$s1" "$hz" "$(tree_kb "$server_pid" VmRSS)" \
    "$(tree_kb "$server_pid" VmHWM)" "$round" >> "$runs" <<'PY'
import json, sys
c, mode, wl, n, extra, tool, s0, s1, hz, rss, hwm, rnd = sys.argv[1:]
hz = int(hz)
r = {"contender": c, "mode": mode, "workload": wl, "conns": int(n), "round": int(rnd)}
r.update(json.loads(extra or "{}"))
r.update(json.loads(tool))
done = r.get("requests", r.get("completed", 0)) or 0
a, b = s0.split(), s1.split()
d = [None if "null" in (x, y) else int(y) - int(x) for x, y in zip(a, b)]
per = lambda v, scale=1.0: v * scale / done if done and v is not None else None
r["server_cpu_s"] = d[0] / hz
r["server_cpu_us_per_req"] = per(d[0], 1e6 / hz)
r["machine_cpu_us_per_req"] = per(d[1], 1e6 / hz)
r["server_core_us_per_req"] = per(d[2], 1e6 / hz)
for i, k in enumerate(("client_rx_pkts", "client_rx_bytes", "client_tx_pkts", "client_tx_bytes")):
    r[k + "_per_req"] = per(d[3 + i])
r["loop_work_us_per_req"] = per(d[7], 1e-3)
# How busy the load generator's CPU was between the snapshots (1.0: saturated, the
# client is the limit; near 1 its own queueing shows in the latency it measures).
r["load_core_busy"] = d[8] / hz / (d[9] / 1e9) if d[9] else None
for k in ("db", "relay"):
    if k + "_ticks" in r:
        r[k + "_cpu_us_per_req"] = per(r[k + "_ticks"], 1e6 / hz)
r["rss_kb"], r["peak_rss_kb"] = int(rss), int(hwm)
r["errors"] = r.get("errors", 0) + r.get("non_2xx", 0) + sum(v for k, v in r.items() if k.startswith("errors_"))
print(json.dumps(r))
PY
  tail -1 "$runs" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); f=lambda v: ("%.2f" % v) if v else "-"; print("  r%d %-13s %-6s %-10s c=%-5s %10.0f req/s  p50 %6s us  p99 %7s us  errors %s  cpu %s core %s loop %s us/req  pkts/req in %s out %s  rss %d KiB" % (r["round"], r["contender"], r["mode"], r["workload"], r["conns"], r.get("rps", r.get("achieved_rps", 0)) or 0, r.get("p50_us"), r.get("p99_us"), r["errors"], f(r["server_cpu_us_per_req"]), f(r["server_core_us_per_req"]), f(r["loop_work_us_per_req"]), f(r["client_rx_pkts_per_req"]), f(r["client_tx_pkts_per_req"]), r["rss_kb"]))' >&2
}

# peak CONTENDER WORKLOAD CONNS: closed-loop wrk run; prints rps.
peak() {
  local c=$1 wl=$2 n=$3 depth=1 path=/json s0 s1 json
  [ "$wl" = plaintext ] && depth=16 && path=/plaintext
  s0=$(snap)
  json=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c"$n" -d"${secs}s" --timeout 5s \
    -s benches/wrk/pipeline.lua "http://$ADDR:$PORT$path" -- "$depth" 2>/dev/null | grep '^{' || true)
  s1=$(snap)
  record "$c" peak "$wl" "$n" "{\"pipeline\":$depth}" "$json" "$s0" "$s1"
}

# The database's CPU ticks: postgres (postmaster and backends), and the relay.
db_ticks() { local t=0 p; for p in $(pgrep -u postgres -x postgres); do t=$((t + $(proc_ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }
relay_ticks() { local t=0 p; for p in $(pgrep -f "socat TCP-LISTEN:$DB_PORT,bind=$DB_HOST"); do t=$((t + $(proc_ticks "$p" 2>/dev/null || echo 0))); done; echo "$t"; }

# dbpeak CONTENDER WORKLOAD CONNS: closed-loop wrk run on a database route.
dbpeak() {
  local c=$1 wl=$2 n=$3 path s0 s1 d0 d1 r0 r1 json
  case $wl in
    db) path=/db ;;
    queries20) path="/queries?queries=20" ;;
    fortunes) path=/fortunes ;;
    updates20) path="/updates?queries=20" ;;
  esac
  s0=$(snap); d0=$(db_ticks); r0=$(relay_ticks)
  json=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c"$n" -d"${secs}s" --timeout 5s \
    -s benches/wrk/pipeline.lua "http://$ADDR:$PORT$path" -- 1 2>/dev/null | grep '^{' || true)
  s1=$(snap); d1=$(db_ticks); r1=$(relay_ticks)
  record "$c" db "$wl" "$n" "{\"db_ticks\":$((d1 - d0)),\"relay_ticks\":$((r1 - r0))}" "$json" "$s0" "$s1"
}

# fixed CONTENDER RATE PERCENT: open-loop px-load run on json with 64 connections.
fixed_rate() {
  local c=$1 rate=$2 pct=$3 s0 s1 json
  s0=$(snap)
  json=$(ip netns exec px-client taskset -c "$load_cpu" target/release/px-load --addr "$ADDR:$PORT" --path /json \
    --conns 64 --rate "$rate" --secs "$secs" --warmup 1 || true)
  s1=$(snap)
  record "$c" fixed json 64 "{\"percent_of_peak\":$pct}" "$json" "$s0" "$s1"
}

# scale CONTENDER N: N connections held open (idle), 64 active (wrk json) beside them.
scale_run() {
  local c=$1 n=$2 s0 s1 json held probe fifo
  fifo=$(mktemp -u /tmp/px-hold.XXXX); mkfifo "$fifo"
  ip netns exec px-client python3 scripts/conn-hold.py "$ADDR" "$PORT" "$n" < "$fifo" > "$out/hold.out" 2>&1 &
  local holder=$!
  exec 9> "$fifo"
  for _ in $(seq 1200); do grep -q held "$out/hold.out" 2>/dev/null && break; sleep 0.1; done
  held=$(grep -o '"held": [0-9]*' "$out/hold.out" | grep -o '[0-9]*$' || echo 0)
  s0=$(snap)
  json=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c64 -d"${secs}s" --timeout 5s \
    -s benches/wrk/pipeline.lua "http://$ADDR:$PORT/json" -- 1 2>/dev/null | grep '^{' || true)
  s1=$(snap)
  echo probe >&9
  for _ in $(seq 300); do grep -q probed "$out/hold.out" 2>/dev/null && break; sleep 0.1; done
  probe=$(grep '^{"probed' "$out/hold.out" || echo '{"probed":0,"answered":0}')
  record "$c" scale json 64 "{\"open\":$n,\"held\":$held,\"idle_probe\":$probe}" "$json" "$s0" "$s1"
  exec 9>&-
  wait "$holder" 2>/dev/null || true
  rm -f "$fifo"
}

# One round: every contender in turn, each through every workload. Rounds rotate the
# order, so no contender always runs first (or last) on a warm or tired machine.
log "results in $out; contenders: $contenders; connections: $conns; ${secs}s per run; $rounds round(s); link $link"
order=($contenders)
for round in $(seq "$rounds"); do
  rot=$(( (round - 1) % ${#order[@]} ))
  for c in "${order[@]:$rot}" "${order[@]:0:$rot}"; do
    log "== round $round/$rounds: $c"
    start "$c"
    case " $db_contenders " in *" $c "*)
      for n in $db_conns; do
        for wl in $db_workloads; do dbpeak "$c" "$wl" "$n"; done
      done ;;
    esac
    [ $http -eq 1 ] || { stop; continue; }
    for n in $conns; do
      peak "$c" plaintext "$n"
      peak "$c" json "$n"
    done
    # Fixed rates are shares of this round's json peak of this contender.
    best=$(python3 -c 'import json,sys; print(int(max([r.get("rps",0) or 0 for r in map(json.loads, open(sys.argv[1])) if r["contender"]==sys.argv[2] and r["mode"]=="peak" and r["workload"]=="json" and r["round"]==int(sys.argv[3])] or [0])))' "$runs" "$c" "$round")
    for pct in $fixed; do
      [ "$best" -gt 0 ] && fixed_rate "$c" $((best * pct / 100)) "$pct"
    done
    for n in $scale; do
      scale_run "$c" "$n"
    done
    stop
  done
done
addr_off

python3 scripts/bench-report.py "$out" $([ $readme -eq 1 ] && echo --readme README.md) $([ $quick -eq 1 ] && echo --check)
log "done: $out/results.md"
