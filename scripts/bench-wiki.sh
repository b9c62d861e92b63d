#!/usr/bin/env bash
# Parallelopedia at scale: a synthetic dump of N pages (default 16 million titles,
# scripts/wiki-synth.py), its index built and served; reports index size on disk, build
# time and peak memory, RSS while serving, /offsets and /wiki p50/p99 at a fixed rate
# (px-load, open loop; medians of three runs, /offsets with and without its answer cache),
# and the cold-read comparison: p99 of a hot route while pages are
# read from a cold page cache, wiki.page_reads = io_uring against threads and inline
# (blocking on the core).
# Env: KEEP_INDEX=1 reuses a built index, SKIP_WARM=1 / SKIP_COLD=1 skip those runs,
# RATE (warm runs), COLD_RATE (cold /wiki, default 500), SECS, COLD_MODES (default
# "none io_uring threads inline"; none = the evictor alone, the control).
# BACKEND=af-xdp runs the appliance on the testbed instead (root).
# Usage: scripts/bench-wiki.sh [N] [WORKDIR]     (kernel backend on 127.0.0.1:18090; the
# server on SERVER_CPU, load on LOAD_CPU; WORKDIR default /var/tmp/px-wiki-bench, needs
# about 300 bytes of disk per page: ~5 GB for 16M). Asserts nothing; prints figures.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh
n=${1:-16000000}
work=${2:-/var/tmp/px-wiki-bench}
rate=${RATE:-20000}
secs=${SECS:-10}
port=18090
addr=127.0.0.1
# BACKEND=af-xdp: the appliance on the testbed (scripts/testbed.sh, root) on 10.99.0.1,
# the load from the px-client namespace; default: the kernel backend on loopback.
backend=${BACKEND:-kernel}
client=()
if [ "$backend" = af-xdp ]; then
  [ "$(id -u)" -eq 0 ] || { echo "bench-wiki.sh: BACKEND=af-xdp needs root (the testbed)" >&2; exit 1; }
  scripts/testbed.sh up --queues 1 >/dev/null
  ip -n px-app addr del 10.99.0.1/24 dev px-app0 2>/dev/null || true  # the appliance owns it
  addr=10.99.0.1 port=8080 client=(ip netns exec px-client)
fi
mkdir -p "$work"
cargo build --release -q -p px-apps -p px-load
bin=target/release/px-appliance
xml=$work/synth-$n.xml
idx=$work/index-$n

if [ ! -s "$xml" ] || [ ! -s "$xml.titles" ]; then
  echo "generating $n pages into $xml"
  /usr/bin/time -f "  generated in %e s" python3 scripts/wiki-synth.py "$n" "$xml" --body-bytes 40
fi
echo "dump: $(du -h "$xml" | cut -f1) ($(stat -c %s "$xml") bytes)"
[ "${KEEP_INDEX:-0}" = 1 ] && grep -q '"format": 3,' "$idx/meta.json" 2>/dev/null || { rm -rf "$idx"
/usr/bin/time -f "build: %e s wall, %U s user, peak RSS %M KiB" "$bin" wiki-index --quiet --xml "$xml" --out "$idx" 2>&1 \
  | sed 's/^px-appliance: /  /'; grep -o '"sort_runs": [0-9]*\|"build_memory_budget": [0-9]*' "$idx/meta.json" | tr '\n' ' '; echo; }
echo "index on disk: $(du -sh "$idx" | cut -f1) (titles.fst $(du -h "$idx/titles.fst" | cut -f1), pages.bin $(du -h "$idx/pages.bin" | cut -f1))"

# Request mixes: random titles and random 3-5 character prefixes of real titles.
python3 - "$xml.titles" "$work" <<'PY'
import random, sys, urllib.parse
sample, work = sys.argv[1], sys.argv[2]
rng = random.Random(3)
titles = open(sample, encoding="utf-8").read().splitlines()
rng.shuffle(titles)
q = lambda s: urllib.parse.quote(s, safe="")
with open(f"{work}/wiki-paths", "w") as f:
    for t in titles[:100000]:
        f.write(f"/wiki/{q(t)}\n")
with open(f"{work}/offsets-paths", "w") as f:
    for t in titles[100000:200000] or titles:
        f.write(f"/offsets/{q(t[:rng.randint(3, 5)])}?limit=20\n")
PY

start_server() {
  if [ "$backend" = af-xdp ]; then
    ip netns exec px-app taskset -c "$server_cpu" "$bin" --backend af-xdp --iface px-app0 --ip "$addr/24" \
      --queues 1 --cores "$server_cpu" --apps tfb,wiki --wiki-dir "$idx" --log-level info "$@" > "$work/server.log" 2>&1 &
  else
    taskset -c "$server_cpu" "$bin" --listen "$addr:$port" --queues 1 --cores "$server_cpu" --apps tfb,wiki \
      --wiki-dir "$idx" --log-level info "$@" > "$work/server.log" 2>&1 &
  fi
  pid=$!
  wait_ready "$work/server.log"
}
load() {  # load PATHS_FILE|PATH RATE
  local arg=--path; [ -f "$1" ] && arg=--paths
  "${client[@]}" taskset -c "$load_cpu" target/release/px-load --addr "$addr:$port" $arg "$1" --conns 32 --rate "$2" --secs "$secs"
}
rss() { awk '/VmRSS|RssAnon|RssFile|HugetlbPages|VmLck/ {printf "%s %s KiB  ", $1, $2}' "/proc/$1/status"; }

# Enough 2 MiB hugepages for the index (titles.fst, pages.bin) and the arena pool, so
# both are held there rather than mapped and locked (the log says which).
idx_mib=$(( ($(stat -c %s "$idx/titles.fst") + $(stat -c %s "$idx/pages.bin")) >> 20 ))
scripts/hugepages.sh $(( idx_mib / 2 + 2 + 32 + 8 ))

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }
# Three runs of each: "PATH achieved p50 p99 (medians)" and the runs.
runs3() {  # runs3 LABEL PATHS_FILE|PATH
  local out=() p50s=() p99s=() ach=() r
  for _ in 1 2 3; do
    r=$(load "$2" "$rate")
    ach+=("$(echo "$r" | field achieved_rps)"); p50s+=("$(echo "$r" | field p50_us)"); p99s+=("$(echo "$r" | field p99_us)")
  done
  echo "$1 at $rate req/s, 3 runs: achieved $(printf '%s\n' "${ach[@]}" | median), p50 $(printf '%s\n' "${p50s[@]}" | median) us, p99 $(printf '%s\n' "${p99s[@]}" | median) us (medians; p99 of each run: ${p99s[*]} us)"
}

if [ "${SKIP_WARM:-0}" != 1 ]; then
start_server
echo "RSS after start: $(rss "$pid")"
echo "  $(grep -o 'index ([0-9]* MiB) resident.*' "$work/server.log" | head -1)"
echo "  (HugetlbPages: index files and arena pool in hugepages; VmLck: index files mapped and locked; all of it in memory for the process's life)"
# Warm the page cache with every page the /wiki mix asks for (not measured).
"${client[@]}" taskset -c "$load_cpu" target/release/px-load --addr "$addr:$port" --paths "$work/wiki-paths" --conns 32 --rate 20000 --secs 6 > /dev/null
runs3 "/plaintext (reference)" /plaintext
runs3 "/offsets" "$work/offsets-paths"
runs3 "/wiki" "$work/wiki-paths"
echo "  offsets cache: $("${client[@]}" curl -s "$addr:$port/offsets/$(head -1 "$work/offsets-paths" | sed 's|/offsets/||')" -o /dev/null -D - | grep -i x-offsets-cache | tr -d '\r')"
echo "RSS while serving (after all runs): $(rss "$pid") peak VmHWM $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") KiB"
echo "  (RssFile is the binary, plus the index where it is mapped and locked; the dump is read, not mapped; RssAnon is the process's own memory)"
kill -TERM "$pid"; wait "$pid" || true
# The same /offsets mix with no answer cache: every request walks the title index.
printf '[wiki]\ndir = "%s"\noffsets_cache_mb = 0\n' "$idx" > "$work/nocache.toml"
start_server --config "$work/nocache.toml"
runs3 "/offsets, offsets_cache_mb = 0" "$work/offsets-paths"
kill -TERM "$pid"; wait "$pid" || true
fi

# Cold reads: evict the dump from the page cache every 50 ms while /wiki is fetched at a
# low rate, and measure a hot route (/plaintext) on the same core at the same time.
# Mode "none" is the control: the evictor runs, no /wiki is asked, only the hot route
# (what the eviction itself and the shared load CPU cost the measurement).
cold_run() {
  local mode=$1 reads=$1
  [ "$mode" = none ] && reads=io_uring
  printf '[wiki]\ndir = "%s"\npage_reads = "%s"\n' "$idx" "$reads" > "$work/cold.toml"
  start_server --config "$work/cold.toml"
  python3 - "$xml" <<'PY' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
while True:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    time.sleep(0.05)
PY
  local evictor=$!
  local wl=""
  [ "$mode" != none ] && { load "$work/wiki-paths" "${COLD_RATE:-500}" > "$work/cold-wiki.json" & wl=$!; }
  echo "page_reads=$mode: hot /plaintext at 5000 req/s: $(load /plaintext 5000)"
  [ -n "$wl" ] && { wait "$wl"; echo "page_reads=$mode: cold /wiki at ${COLD_RATE:-500} req/s: $(cat "$work/cold-wiki.json")"; }
  kill "$evictor"; wait "$evictor" 2>/dev/null || true
  kill -TERM "$pid"; wait "$pid" || true
  [ "$reads" = io_uring ] && echo "  core's io_uring: $(grep -o 'file_read[a-z_]*=[0-9]*' "$work/server.log" | tr '\n' ' ')"
  return 0
}
[ "${SKIP_COLD:-0}" = 1 ] && exit 0
for m in ${COLD_MODES:-none io_uring threads inline}; do cold_run "$m"; done
