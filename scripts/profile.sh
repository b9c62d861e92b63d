#!/usr/bin/env bash
# Where the time goes, as instruction counts (stable on this noisy machine, unlike
# seconds): callgrind over apps/examples/profile.rs, which runs the whole packet path of
# the json and plaintext (pipelined ×16) requests in one process — a scripted client's
# frames on an in-memory link, the appliance's own transport (network layer, TCP, HTTP,
# the tfb app) as a core loop turns it. Collection is limited to the server's turns, so
# the client is not counted.
#
#   scripts/profile.sh [--requests N] [--out DIR]   (default 20000, target/profile)
#
# Writes DIR/profile.md: instructions per request and the top functions (exclusive)
# per workload, with frames, turns and pure ACKs per request; the raw callgrind files
# stay beside it for callgrind_annotate / kcachegrind.
set -euo pipefail
cd "$(dirname "$0")/.."
n=20000 out=target/profile
while [ $# -gt 0 ]; do
  case $1 in
    --requests) n=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "profile.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is not installed (apt-get install valgrind; scripts/install-test-deps.sh does)" >&2; exit 1; }
command -v callgrind_annotate >/dev/null || { echo "profile.sh: callgrind_annotate is missing (it comes with valgrind)" >&2; exit 1; }
cargo build --release -q -p px-apps --example profile
mkdir -p "$out"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit-dirty"
for wl in json plaintext; do
  echo "profile: $wl, $n requests under callgrind" >&2
  valgrind --tool=callgrind --toggle-collect='profile::server_step' --callgrind-out-file="$out/callgrind.$wl.out" \
    target/release/examples/profile "$wl" "$n" > "$out/$wl.json" 2> "$out/$wl.valgrind.log"
  callgrind_annotate --auto=no --threshold=99 "$out/callgrind.$wl.out" > "$out/$wl.annotate.txt"
done
python3 - "$out" "$commit" <<'PY'
import json, os, re, sys
out, commit = sys.argv[1:]
lines = [f"# Instructions per request on the packet path (commit `{commit}`)", "",
         "callgrind over `apps/examples/profile.rs` (scripts/profile.sh): the server's turns only; "
         "exclusive instruction counts of the top functions, divided by the requests served.", ""]
for wl in ("json", "plaintext"):
    meta = json.loads(open(os.path.join(out, f"{wl}.json")).read().strip().splitlines()[-1])
    n = meta["requests"]
    text = open(os.path.join(out, f"{wl}.annotate.txt")).read()
    total = int(re.search(r"^\s*([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", text, re.M).group(1).replace(",", ""))
    # One row per function: callgrind lists a function once per source file its
    # inlined parts came from ("file:function [object]"); those are summed.
    agg = {}
    for m in re.finditer(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", text, re.M):
        name = m.group(2)
        if "PROGRAM TOTALS" in name:
            continue
        name = re.sub(r"\s*\[[^\]]*\]\s*$", "", name)
        head, sep, tail = name.partition(":")
        if sep and ("/" in head or head.startswith("?")):
            name = tail
        agg[name] = agg.get(name, 0) + int(m.group(1).replace(",", ""))
    rows = sorted(((ir, 100 * ir / total, name) for name, ir in agg.items()), reverse=True)
    lines += [f"## {wl}{' (pipelined ×16)' if wl == 'plaintext' else ''}", "",
              f"- **{total / n:,.0f} instructions per request** ({n:,.0f} requests)",
              f"- per request: server frames in {meta['server_frames_in_per_req']:.3f}, out {meta['server_frames_out_per_req']:.3f}; "
              f"busy turns {meta['busy_turns_per_req']:.3f}; pure ACKs to the client {meta['client_pure_acks_per_req']:.3f}", "",
              "| instructions / req | share | function |", "|---|---|---|"]
    for ir, pct, name in rows[:20]:
        lines.append(f"| {ir / n:,.0f} | {pct:.1f} % | `{name[:110]}` |")
    lines.append("")
open(os.path.join(out, "profile.md"), "w").write("\n".join(lines))
print(os.path.join(out, "profile.md"))
PY
