#!/usr/bin/env bash
# Fixed-rate json at the SAME absolute rates for every contender (scripts/bench.sh runs
# each at a share of its own peak): latency and the server's CPU per request side by side,
# so "CPU that follows load" can be judged at equal work — adaptive polling against pure
# spinning and against the kernel backend, which sleeps in epoll_wait between requests.
#
#   scripts/bench-fixed.sh                      3 rounds, 15k / 30k / 48k req/s, 5 s each
#   options: --contenders "px-af-xdp px-af-xdp-spin px-kernel nginx"  --rates "15000 30000"
#            --rounds N  --secs N  --out DIR
#
# Open loop (px-load, 64 connections, latency from each request's scheduled time), server
# pinned to SERVER_CPU, load to LOAD_CPU, the veth testbed. CPU per request is the
# server process's user+system time over the run (warm-up second included, at the same
# rate) divided by the requests sent in that time. Rounds interleave the contenders.
# Root only (testbed). Measures and writes down; asserts nothing about speed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/bench-common.sh
contenders="px-af-xdp px-af-xdp-spin px-kernel" rates="15000 30000 48000" rounds=3 secs=5
out=benches/results/$(date -u +%Y-%m-%d)-fixed
while [ $# -gt 0 ]; do
  case $1 in
    --contenders) contenders=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench-fixed.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench-fixed.sh: needs root (the testbed's namespaces)" >&2; exit 1; }
mkdir -p "$out"
runs=$out/runs.jsonl
: > "$runs"
log() { echo "bench-fixed: $*" >&2; }
cargo build --release -q -p px-apps -p px-load
ADDR=10.99.0.1 PORT=8080
scripts/testbed.sh up --queues 1 --link fair >/dev/null
addr_on() { ip -n px-app addr replace "$ADDR/24" dev px-app0; }
addr_off() { ip -n px-app addr del "$ADDR/24" dev px-app0 2>/dev/null || true; }
nginx_prefix=""
cleanup() {
  [ -n "${server_pid:-}" ] && kill -KILL "$server_pid" 2>/dev/null
  addr_off
  [ -n "$nginx_prefix" ] && rm -rf "$nginx_prefix"
  true
}
trap cleanup EXIT
printf '[af_xdp]\npolling = "spin"\n' > "$out/px-spin.toml"

start() {
  local c=$1 logf=$out/$1.log
  local px=(target/release/px-appliance --queues 1 --cores "$server_cpu" --log-level warn)
  case $c in
    px-af-xdp)
      addr_off
      ip netns exec px-app taskset -c "$server_cpu" "${px[@]}" --backend af-xdp --iface px-app0 --ip "$ADDR/24" \
        > "$logf" 2>&1 & ;;
    px-af-xdp-spin)
      addr_off
      ip netns exec px-app taskset -c "$server_cpu" "${px[@]}" --backend af-xdp --iface px-app0 --ip "$ADDR/24" \
        --config "$out/px-spin.toml" > "$logf" 2>&1 & ;;
    px-kernel)
      addr_on
      ip netns exec px-app taskset -c "$server_cpu" "${px[@]}" --backend kernel --listen "$ADDR:$PORT" > "$logf" 2>&1 & ;;
    nginx)
      addr_on
      nginx_prefix=$(mktemp -d /tmp/px-fixed-nginx.XXXX)
      sed -e "s|@WORKERS@|1|; s|@LISTEN@|$ADDR:$PORT|; s|@PREFIX@|$nginx_prefix|g" benches/peers/nginx/nginx.conf.in \
        > "$nginx_prefix/nginx.conf"
      ip netns exec px-app taskset -c "$server_cpu" "$(command -v nginx || echo /usr/sbin/nginx)" \
        -c "$nginx_prefix/nginx.conf" -p "$nginx_prefix" > "$logf" 2>&1 & ;;
    *) echo "bench-fixed.sh: unknown contender $c" >&2; exit 2 ;;
  esac
  server_pid=$!
  wait_http_ready "http://$ADDR:$PORT/json" "$logf" "bench-fixed: $c"
}

# The server's processes: nginx forks its worker, the others are one process.
server_ticks() {
  local t=0 p
  for p in $server_pid $(pgrep -P "$server_pid" 2>/dev/null || true); do t=$((t + $(proc_ticks "$p"))); done
  echo "$t"
}

order=($contenders)
for round in $(seq "$rounds"); do
  rot=$(( (round - 1) % ${#order[@]} ))
  for c in "${order[@]:$rot}" "${order[@]:0:$rot}"; do
    start "$c"
    for rate in $rates; do
      t0=$(server_ticks)
      res=$(ip netns exec px-client taskset -c "$load_cpu" target/release/px-load --addr "$ADDR:$PORT" --path /json \
        --conns 64 --rate "$rate" --secs "$secs" --warmup 1 2>/dev/null || echo '{"failed":1}')
      t1=$(server_ticks)
      cpu=$(us_per "$t0" "$t1" $((rate * (secs + 1))))
      echo "{\"round\":$round,\"contender\":\"$c\",\"rate\":$rate,\"cpu_us_per_req\":$cpu,\"load\":$res}" >> "$runs"
      log "round $round $c $rate req/s: $(echo "$res" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("p50", d.get("p50_us"), "p99", d.get("p99_us"), "us")'), cpu $cpu us/req"
    done
    stop_server
    [ -n "$nginx_prefix" ] && rm -rf "$nginx_prefix" && nginx_prefix=""
  done
done

python3 - "$runs" "$out/results.md" "$rounds" "$secs" <<'PY'
import json, statistics as st, sys
runs, dest, rounds, secs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [json.loads(l) for l in open(runs)]
cont = list(dict.fromkeys(r["contender"] for r in rows))
rates = sorted({r["rate"] for r in rows})
def cell(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{fmt(st.median(xs))} ({fmt(min(xs))}–{fmt(max(xs))})"
ms = lambda v: f"{v / 1000:.2f}"
us = lambda v: f"{v:.1f}"
out = ["# Fixed-rate json at equal rates", "",
       f"`scripts/bench-fixed.sh`: {rounds} interleaved round(s), {secs} s per run after a 1 s warm-up, px-load open "
       "loop on 64 connections (latency from each request's scheduled time). Medians, min–max in brackets. CPU: the "
       "server process's user+system time per request.", "",
       "| req/s | contender | p50 ms | p99 ms | p99.9 ms | CPU µs/req | errors |", "|---|---|---|---|---|---|---|"]
for rate in rates:
    for c in cont:
        rs = [r for r in rows if r["contender"] == c and r["rate"] == rate]
        if not rs:
            continue
        ld = [r["load"] for r in rs]
        out.append(f"| {rate:,} | {c} | {cell([d.get('p50_us') for d in ld], ms)} | {cell([d.get('p99_us') for d in ld], ms)} "
                   f"| {cell([d.get('p999_us') for d in ld], ms)} | {cell([r['cpu_us_per_req'] for r in rs], us)} "
                   f"| {sum(d.get('errors', 0) + d.get('failed', 0) for d in ld)} |")
open(dest, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
log "results: $out/results.md"
