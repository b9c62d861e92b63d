#!/usr/bin/env python3
"""Medians (with min–max) over repeated scripts/bench.sh runs: one row per contender,
mode, workload and connection count, from each DIR/runs.jsonl. Run the harness several
times (each run goes through every contender in turn, so the runs interleave them),
then: scripts/bench-medians.py DIR1 DIR2 DIR3 > medians.md"""
import json, os, statistics, sys

dirs = sys.argv[1:]
if len(dirs) < 2:
    sys.exit(__doc__)
groups, order = {}, []
for d in dirs:
    for line in open(os.path.join(d, "runs.jsonl")):
        if not line.strip():
            continue
        r = json.loads(line)
        key = (r["mode"], r["workload"], r["conns"], r["contender"])
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(r)


def col(rs, f):
    vs = [v for v in (f(r) for r in rs) if v is not None]
    if not vs:
        return "-"
    med = statistics.median(vs)
    fmt = (lambda v: f"{v:,.0f}") if med >= 100 else (lambda v: f"{v:.1f}")
    return f"{fmt(med)} ({fmt(min(vs))}–{fmt(max(vs))})"


rps = lambda r: r.get("rps") or r.get("achieved_rps")
ms = lambda k: (lambda r: r[k] / 1000 if r.get(k) else None)
per_cpu = lambda r: 1e6 / r["server_cpu_us_per_req"] if r.get("server_cpu_us_per_req") else None
print(f"Medians of {len(dirs)} runs (min–max): {', '.join(dirs)}\n")
print("| mode | workload | conns | contender | runs | req/s | p99 ms | server µs/req | req/s per server CPU | db µs/req | relay µs/req | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(order, key=lambda k: (k[0], ["db", "queries20", "fortunes", "updates20", "plaintext", "json"].index(k[1]) if k[1] in ["db", "queries20", "fortunes", "updates20", "plaintext", "json"] else 9, k[2], order.index(k))):
    rs = groups[key]
    mode, wl, n, c = key
    print(f"| {mode} | {wl} | {n} | {c} | {len(rs)} | {col(rs, rps)} | {col(rs, ms('p99_us'))} | "
          f"{col(rs, lambda r: r.get('server_cpu_us_per_req'))} | {col(rs, per_cpu)} | "
          f"{col(rs, lambda r: r.get('db_cpu_us_per_req'))} | {col(rs, lambda r: r.get('relay_cpu_us_per_req'))} | "
          f"{sum(r.get('errors', 0) for r in rs)} |")
