#!/usr/bin/env bash
# What an admin scrape every second costs the data path: px-appliance on AF_XDP (one
# queue on SERVER_CPU), wrk /json at 64 connections from px-client (LOAD_CPU), with and
# without a scraper fetching /metrics and /stats once a second from inside px-app.
# Rounds alternate the order (off/on, on/off, ...); prints every run, the median req/s
# of each with min–max, their ratio, and the scrapes' size and time.
# Usage: scripts/bench-scrape.sh [ROUNDS [SECONDS]]   (root; testbed addresses only;
# asserts nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} secs=${2:-10}
. scripts/lib/bench-common.sh
[ "$(id -u)" -eq 0 ] || { echo "bench-scrape: needs root (testbed)" >&2; exit 1; }
bin=target/release/px-appliance
[ -x "$bin" ] || cargo build --release
scripts/testbed.sh up --queues 1 >/dev/null
results=$(mktemp) scrapes=$(mktemp)

one() { # one MODE (off|on)
  local mode=$1 log=/tmp/px-scrape.out pid spid="" out rps
  ip netns exec px-app "$bin" --backend af-xdp --iface px-app0 --queues 1 --cores "$server_cpu" \
    --ip 10.99.0.1/24 --admin 127.0.0.1:9180 --log-level warn > "$log" 2>&1 &
  pid=$!
  wait_ready "$log"
  if [ "$mode" = on ]; then
    ( end=$((SECONDS + secs + 1))
      while [ $SECONDS -lt $end ]; do
        for p in metrics stats; do
          ip netns exec px-app curl -s -o /dev/null -w "$p %{size_download} %{time_total}\n" \
            --max-time 2 "http://127.0.0.1:9180/$p" >> "$scrapes" || true
        done
        sleep 1
      done ) &
    spid=$!
  fi
  out=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c64 -d"${secs}s" http://10.99.0.1:8080/json)
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  [ -n "$spid" ] && { kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; }
  printf "%s %s\n" "$mode" "$rps" | tee -a "$results"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

echo "scrape cost: $rounds rounds, ${secs}s each, server CPU $server_cpu, wrk CPU $load_cpu, $(uname -r), $(date -u +%FT%TZ)"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then one off; one on; else one on; one off; fi
done
python3 - "$results" "$scrapes" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    mode, rps = line.split()
    runs.setdefault(mode, []).append(float(rps))
for mode in ("off", "on"):
    v = runs.get(mode, [])
    print(f"scrapes {mode:3}: median {statistics.median(v):,.0f} req/s (min {min(v):,.0f}, max {max(v):,.0f}, {len(v)} runs)")
print(f"with ÷ without: {statistics.median(runs['on']) / statistics.median(runs['off']):.3f}")
sizes = {}
for line in open(sys.argv[2]):
    p, size, t = line.split()
    sizes.setdefault(p, []).append((int(size), float(t)))
for p, v in sizes.items():
    print(f"/{p}: {statistics.median(s for s, _ in v):,.0f} bytes, median {1000 * statistics.median(t for _, t in v):.1f} ms a scrape ({len(v)} scrapes)")
PY
rm -f "$results" "$scrapes"
