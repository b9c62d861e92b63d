#!/usr/bin/env python3
"""Tables for scripts/bench-loss.sh: medians (min–max) per contender and loss rate of the
bulk fetch time and the small-request p99, the ratio of px-af-xdp to the best Linux CUBIC
contender, and the loss the nftables rule actually applied.
Usage: bench-loss-report.py RUNS.jsonl OUT.md ROUNDS BYTES"""
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rounds, nbytes = sys.argv[3], int(sys.argv[4])
cs = list(dict.fromkeys(r["contender"] for r in runs))
rates = sorted({r["loss_pct"] for r in runs})
def cell(vals, fmt):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "failed"
    return f"{fmt(statistics.median(vals))} ({fmt(min(vals))}–{fmt(max(vals))})"
lines = [f"# Loss recovery side by side: {nbytes / 2**20:.0f} MiB fetch and small-request p99",
         "", f"Medians of {rounds} interleaved rounds (min–max). Loss applied by nftables in px-client to both "
         "directions alike; server-side segmentation offload off. Linux: cubic + SACK + RACK.", ""]
lines += ["## Time to fetch the body (s)", "", "| loss | " + " | ".join(cs) + " | px-af-xdp ÷ best Linux |",
          "|---|" + "---|" * (len(cs) + 1)]
for rate in rates:
    row, med = [], {}
    for c in cs:
        v = [r["bulk_s"] for r in runs if r["contender"] == c and r["loss_pct"] == rate]
        ok = [x for x in v if x is not None]
        med[c] = statistics.median(ok) if ok else None
        fails = len(v) - len(ok)
        row.append(cell(v, lambda x: f"{x:.3f}") + (f", {fails} failed" if fails else ""))
    linux = [med[c] for c in cs if c not in ("px-af-xdp", "px-kernel-bbr") and med.get(c)]
    ratio = f"{med['px-af-xdp'] / min(linux):.2f}" if med.get("px-af-xdp") and linux else "—"
    lines.append(f"| {rate:g} % | " + " | ".join(row) + f" | {ratio} |")
lines += ["", "## Small requests: p99 latency (ms), 1000 req/s of /json on 16 connections", "",
          "| loss | " + " | ".join(cs) + " | px-af-xdp ÷ best Linux |", "|---|" + "---|" * (len(cs) + 1)]
for rate in rates:
    row, med = [], {}
    for c in cs:
        v = [r.get("small_p99_us") / 1000 if r.get("small_p99_us") is not None else None
             for r in runs if r["contender"] == c and r["loss_pct"] == rate]
        ok = [x for x in v if x is not None]
        med[c] = statistics.median(ok) if ok else None
        row.append(cell(v, lambda x: f"{x:.2f}"))
    linux = [med[c] for c in cs if c not in ("px-af-xdp", "px-kernel-bbr") and med.get(c)]
    ratio = f"{med['px-af-xdp'] / min(linux):.2f}" if med.get("px-af-xdp") and linux else "—"
    lines.append(f"| {rate:g} % | " + " | ".join(row) + f" | {ratio} |")
lines += ["", "## Loss actually applied (dropped ÷ seen, both directions, all rounds)", "",
          "| loss | " + " | ".join(cs) + " |", "|---|" + "---|" * len(cs)]
for rate in rates:
    row = []
    for c in cs:
        rs = [r for r in runs if r["contender"] == c and r["loss_pct"] == rate]
        seen = sum(r["bulk_packets"] + r["small_packets"] for r in rs)
        drop = sum(r["bulk_dropped"] + r["small_dropped"] for r in rs)
        row.append(f"{100 * drop / seen:.2f} % of {seen}" if seen else "—")
    lines.append(f"| {rate:g} % | " + " | ".join(row) + " |")
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
