#!/usr/bin/env bash
# Two builds of px-appliance side by side (a change against the commit before it), on
# the testbed, interleaved: each round runs A then B (B then A on odd rounds) on both
# backends, plaintext pipelined ×16 at c=256 and json at c=64. Prints every run, then
# the median req/s of each (build, backend, workload) with min–max, and B/A.
# Usage: scripts/bench-ab.sh A_BIN B_BIN [ROUNDS [SECONDS]]  (root; testbed addresses only;
# asserts nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
a_bin=$1 b_bin=$2 rounds=${3:-3} secs=${4:-5}
. scripts/lib/bench-common.sh
[ "$(id -u)" -eq 0 ] || { echo "bench-ab: needs root (testbed)" >&2; exit 1; }
scripts/testbed.sh up --queues 1 --link fair >/dev/null
results=$(mktemp)

one() { # one BUILD BIN BACKEND
  local build=$1 bin=$2 backend=$3 log=/tmp/px-ab.out pid
  if [ "$backend" = kernel ]; then
    ip -n px-app addr add 10.99.0.1/24 dev px-app0 2>/dev/null || true
    ip netns exec px-app "$bin" --backend kernel --listen 10.99.0.1:8080 --queues 1 --cores "$server_cpu" \
      --log-level warn > "$log" 2>&1 &
  else
    ip -n px-app addr del 10.99.0.1/24 dev px-app0 2>/dev/null || true
    ip netns exec px-app "$bin" --backend af-xdp --iface px-app0 --queues 1 --cores "$server_cpu" \
      --ip 10.99.0.1/24 --log-level warn > "$log" 2>&1 &
  fi
  pid=$!
  wait_ready "$log"
  for w in "plaintext 256 16" "json 64 1"; do
    set -- $w
    local out rps
    out=$(ip netns exec px-client taskset -c "$load_cpu" wrk -t1 -c"$2" -d"${secs}s" \
          -s benches/wrk/pipeline.lua "http://10.99.0.1:8080/$1" -- "$3")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    printf "%s %s %s %s\n" "$build" "$backend" "$1" "$rps" | tee -a "$results"
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

echo "A=$a_bin B=$b_bin, $rounds rounds, ${secs}s per run, server CPU $server_cpu, wrk CPU $load_cpu, $(uname -r), $(date -u +%FT%TZ)"
for r in $(seq "$rounds"); do
  for backend in kernel af-xdp; do
    if [ $((r % 2)) -eq 1 ]; then one A "$a_bin" "$backend"; one B "$b_bin" "$backend"
    else one B "$b_bin" "$backend"; one A "$a_bin" "$backend"; fi
  done
done
ip -n px-app addr del 10.99.0.1/24 dev px-app0 2>/dev/null || true
echo "== medians (min–max) and B/A"
python3 - "$results" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    b, backend, w, rps = line.split()
    runs[(backend, w, b)].append(float(rps))
for backend in ("kernel", "af-xdp"):
    for w in ("plaintext", "json"):
        a, b = runs[(backend, w, "A")], runs[(backend, w, "B")]
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{backend:7} {w:9} A {ma:>11,.0f} ({min(a):,.0f}–{max(a):,.0f})  "
              f"B {mb:>11,.0f} ({min(b):,.0f}–{max(b):,.0f})  B/A {mb / ma:.3f}")
PY
rm -f "$results"
