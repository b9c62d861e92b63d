#!/usr/bin/env bash
# A soak over AF_XDP (issue #14, item 5): MINUTES (default 30; --quick: 2) of mixed
# traffic from scripts/soak.py in px-client — keep-alive and pipelined requests, large
# bodies checked byte for byte, slow readers, clients that reset mid-response, one
# request per connection — through the appliance's in-loop fault injector (loss,
# duplication and reordering both ways). Every 10 s it samples the appliance's memory
# (RSS plus hugetlb pages), and from the admin listener its connections, free arena
# chunks, requests and responses.
# Checks, and fails if any is false:
#   - no client failure: every request sent was answered whole, or abandoned on purpose
#     (sent = complete + abandoned);
#   - the server parsed exactly the requests sent, and queued a response to each;
#   - once the clients are gone, every connection closes and every arena chunk is free;
#   - memory after warm-up (the first fifth) grows less than 16 MiB; its slope is reported.
# Usage: scripts/soak.sh [--quick] [MINUTES]   (root; testbed addresses only)
# Writes target/soak/<date>/results.md (and samples.csv) and prints the results.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=30
[ "${1:-}" = --quick ] && { minutes=2; shift; }
[ -n "${1:-}" ] && minutes=$1
secs=$((minutes * 60))
. scripts/lib/bench-common.sh
[ "$(id -u)" -eq 0 ] || { echo "soak.sh: needs root (testbed)" >&2; exit 1; }
cargo build --release -q -p px-apps
scripts/testbed.sh up --queues 1 >/dev/null
out_dir=target/soak/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out_dir"
cfg=$out_dir/soak.toml
cat > "$cfg" <<'EOF'
[af_xdp.faults]
seed = 11
direction = "both"
drop_ppm = 2000       # 0.2 % of frames lost, each way
duplicate_ppm = 1000
reorder_ppm = 5000
EOF
log=$out_dir/appliance.log
ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
  --queues 1 --cores "$server_cpu" --ip 10.99.0.1/24 --config "$cfg" --log-level info > "$log" 2>&1 &
server_pid=$!
trap '[ -n "$server_pid" ] && stop_server' EXIT
wait_http_ready http://10.99.0.1:8080/json "$log" px-appliance

stats() { ip netns exec px-app curl -s --max-time 2 http://127.0.0.1:9180/stats; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['queues'][0]['$1'])"; }
mem_kib() { awk '/VmRSS|HugetlbPages/ {n += $2} END {print n + 0}' "/proc/$server_pid/status"; }
s0=$(stats)
free0=$(echo "$s0" | field arena_chunks_free)
requests0=$(echo "$s0" | field requests) # the readiness check's

ip netns exec px-client taskset -c "$load_cpu" python3 scripts/soak.py 10.99.0.1 8080 "$secs" \
  > "$out_dir/clients.json" 2> "$out_dir/clients.err" &
client_pid=$!
echo "t_s,mem_kib,connections,arena_chunks_free,requests,responses" > "$out_dir/samples.csv"
start=$(date +%s)
while kill -0 "$client_pid" 2>/dev/null; do
  s=$(stats)
  echo "$(( $(date +%s) - start )),$(mem_kib),$(echo "$s" | field connections),$(echo "$s" | field arena_chunks_free),$(echo "$s" | field requests),$(echo "$s" | field responses)" \
    >> "$out_dir/samples.csv"
  for _ in $(seq 100); do kill -0 "$client_pid" 2>/dev/null || break; sleep 0.1; done
done
wait "$client_pid" || { echo "soak.sh: the clients failed:" >&2; cat "$out_dir/clients.err" >&2; exit 1; }

# Every connection closes once the clients are gone (TIME-WAIT is 2 s; a slow reader's
# unread response is reset by its kernel): wait up to 30 s for zero.
conns=-1
for _ in $(seq 300); do
  conns=$(stats | field connections)
  [ "$conns" = 0 ] && break
  sleep 0.1
done
final=$(stats)
free1=$(echo "$final" | field arena_chunks_free)
requests=$(echo "$final" | field requests)
responses=$(echo "$final" | field responses)
mem_end=$(mem_kib)
stop_server

python3 - "$out_dir" "$minutes" "$conns" "$free0" "$free1" "$((requests - requests0))" "$((responses - requests0))" "$mem_end" <<'EOF'
import csv, json, sys
out, minutes, conns, free0, free1, requests, responses, mem_end = sys.argv[1:]
conns, free0, free1, requests, responses, mem_end = map(int, (conns, free0, free1, requests, responses, mem_end))
c = json.load(open(f"{out}/clients.json"))
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
t = [int(r["t_s"]) for r in rows]
m = [int(r["mem_kib"]) for r in rows]
warm = max(1, len(rows) // 5)
tw, mw = t[warm:], m[warm:]
if len(tw) >= 2:
    mt, mm = sum(tw) / len(tw), sum(mw) / len(mw)
    slope = sum((a - mt) * (b - mm) for a, b in zip(tw, mw)) / max(1e-9, sum((a - mt) ** 2 for a in tw))
else:
    slope = 0.0
growth = max(mw or [0]) - m[warm - 1] if rows else 0
checks = [
    ("no client failure", c["failed"] == 0, f"{c['failed']} failed: {c['failures'][:3]}"),
    ("sent = complete + abandoned", c["sent"] == c["ok"] + c["abandoned"],
     f"{c['sent']} = {c['ok']} + {c['abandoned']}"),
    ("server parsed every request sent", requests == c["sent"], f"{requests} parsed, {c['sent']} sent"),
    ("a response queued for every request", responses == requests, f"{responses} responses, {requests} requests"),
    ("every connection closed at the end", conns == 0, f"{conns} left"),
    ("every arena chunk free at the end", free1 == free0, f"{free1} free, {free0} at start"),
    ("memory after warm-up grows < 16 MiB", growth < 16 * 1024, f"{growth} KiB"),
]
lines = [f"# Soak over AF_XDP: {minutes} min", "",
         "Faults both ways: 0.2 % loss, 0.1 % duplication, 0.5 % reordering (in-loop injector).", "",
         f"Clients: {c['sent']} requests sent, {c['ok']} answered whole, {c['abandoned']} abandoned on purpose "
         f"(slow readers and resets mid-response), {c['failed']} failures.", "",
         f"Memory (RSS + hugetlb): {m[0] // 1024 if m else 0} MiB at the first sample, "
         f"{max(m) // 1024 if m else 0} MiB max, {mem_end // 1024} MiB at the end; after warm-up "
         f"(from {t[warm - 1] if rows else 0} s) slope {slope * 60:.1f} KiB/min, growth {growth} KiB. "
         f"{len(rows)} samples in samples.csv.", "",
         "| check | result | figures |", "|---|---|---|"]
lines += [f"| {name} | {'pass' if ok else 'FAIL'} | {fig} |" for name, ok, fig in checks]
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(0 if all(ok for _, ok, _ in checks) else 1)
EOF
