#!/usr/bin/env python3
"""Turns a scripts/bench.sh run (DIR/runs.jsonl + DIR/machine.json) into DIR/results.md
(markdown tables) and PNG plots: throughput against concurrency per workload, and
latency percentiles of the fixed-rate runs. With --readme FILE, also puts the summary
table between the '<!-- bench:start -->' and '<!-- bench:end -->' markers of FILE.
With --check, exits non-zero if any run produced no throughput (quick mode in CI).
Usage: bench-report.py DIR [--readme README.md] [--check]"""
import json, os, sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("bench-report: matplotlib is missing (pip install matplotlib; scripts/install-test-deps.sh does)")

d = sys.argv[1]
readme = sys.argv[sys.argv.index("--readme") + 1] if "--readme" in sys.argv else None
runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl")) if l.strip()]
m = json.load(open(os.path.join(d, "machine.json")))
order = []
for r in runs:
    if r["contender"] not in order:
        order.append(r["contender"])


def rps(r):
    return r.get("rps") or r.get("achieved_rps") or 0


def us(v):
    # wrk reports 0 for high percentiles of pipelined batches it could not rank: shown as -.
    if not v:
        return "-"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v} µs"


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def cpu(r):
    v = r.get("server_cpu_us_per_req")
    return f"{v:.2f}" if v else "-"


lines = [f"# Benchmark results {'(quick)' if m.get('quick') else ''}", "",
         f"- date {m['date']}, commit `{m['commit']}`, kernel {m['kernel']}, {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB",
         f"- link: {m['link']}; server pinned to CPU {m['server_cpu']}, load generators to CPU {m['load_cpu']}; {m['secs']} s per run",
         "- peak: wrk closed loop, keep-alive (plaintext pipelined ×16, json not pipelined); latency percentiles from wrk "
         "(per pipelined batch for plaintext; '-' where wrk gave none). fixed: px-load open loop at a share of the contender's json peak, "
         "64 connections, latency from each request's scheduled time (coordinated omission corrected).",
         "- server CPU: user+system of the server's processes from /proc per request (on veth, receive work runs in "
         "the sender's softirq and is not in it); RSS: resident set after the run, peak: VmHWM.", ""]

peak = [r for r in runs if r["mode"] == "peak"]
summary = ["| contender | workload | conns | req/s | vs px-af-xdp | p50 | p99 | p99.9 | errors | server µs/req | RSS |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
base = {(r["workload"], r["conns"]): rps(r) for r in peak if r["contender"] == "px-af-xdp"}
for wl in ("plaintext", "json"):
    for r in sorted((r for r in peak if r["workload"] == wl), key=lambda r: (r["conns"], order.index(r["contender"]))):
        b = base.get((wl, r["conns"]))
        ratio = f"{rps(r) / b:.2f}×" if b else "-"
        summary.append(f"| {r['contender']} | {wl}{' ×16' if wl == 'plaintext' else ''} | {r['conns']} | {rps(r):,.0f} | "
                       f"{ratio} | {us(r.get('p50_us'))} | {us(r.get('p99_us'))} | {us(r.get('p999_us'))} | "
                       f"{r['errors']} | {cpu(r)} | {mib(r['rss_kb'])} |")
if peak:
    lines += ["## Peak throughput", ""] + summary + [""]

dbr = [r for r in runs if r["mode"] == "db"]
if dbr:
    lines += ["## TechEmpower database tests (PostgreSQL on the load CPU, one connection per server core)", "",
              "Requests per second of server CPU is the figure to compare: the database shares the machine, and "
              "every contender reaches it through the same relay. db/relay µs/req: CPU the database's processes "
              "and the relay spent per request.", "",
              "| contender | workload | conns | req/s | vs px-af-xdp | p50 | p99 | errors | server µs/req | req/s per server CPU | db µs/req | relay µs/req |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    dbase = {(r["workload"], r["conns"]): rps(r) for r in dbr if r["contender"] == "px-af-xdp"}
    names = {"db": "db", "queries20": "queries (20)", "fortunes": "fortunes", "updates20": "updates (20)"}
    for wl in ("db", "queries20", "fortunes", "updates20"):
        for r in sorted((r for r in dbr if r["workload"] == wl), key=lambda r: (r["conns"], order.index(r["contender"]))):
            b = dbase.get((wl, r["conns"]))
            ratio = f"{rps(r) / b:.2f}×" if b else "-"
            c = r.get("server_cpu_us_per_req")
            per_cpu = f"{1e6 / c:,.0f}" if c else "-"
            f = lambda k: f"{r[k]:.1f}" if r.get(k) else "-"
            lines.append(f"| {r['contender']} | {names[wl]} | {r['conns']} | {rps(r):,.0f} | {ratio} | {us(r.get('p50_us'))} | "
                         f"{us(r.get('p99_us'))} | {r['errors']} | {cpu(r)} | {per_cpu} | {f('db_cpu_us_per_req')} | "
                         f"{f('relay_cpu_us_per_req')} |")
    lines.append("")

fixed = [r for r in runs if r["mode"] == "fixed"]
if fixed:
    lines += ["## Fixed-rate latency (json, 64 connections, open loop)", "",
              "| contender | % of its peak | target req/s | achieved | p50 | p90 | p99 | p99.9 | max | errors | server µs/req |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(fixed, key=lambda r: (order.index(r["contender"]), r["percent_of_peak"])):
        lines.append(f"| {r['contender']} | {r['percent_of_peak']} % | {r.get('target_rps', 0):,} | {rps(r):,.0f} | "
                     f"{us(r.get('p50_us'))} | {us(r.get('p90_us'))} | {us(r.get('p99_us'))} | {us(r.get('p999_us'))} | "
                     f"{us(r.get('max_us'))} | {r['errors']} | {cpu(r)} |")
    lines.append("")

scale = [r for r in runs if r["mode"] == "scale"]
if scale:
    lines += ["## Connection scaling (N held open and idle, 64 active running json)", "",
              "| contender | open | held | idle ones answering (sample) | req/s (64 active) | p99 | errors | RSS | RSS per held conn |",
              "|---|---|---|---|---|---|---|---|---|"]
    idle = {r["contender"]: r["rss_kb"] for r in peak if r["conns"] == min(x["conns"] for x in peak)}
    for r in sorted(scale, key=lambda r: (order.index(r["contender"]), r["open"])):
        p = r.get("idle_probe", {})
        per = (r["rss_kb"] - idle.get(r["contender"], 0)) * 1024 / r["held"] if r.get("held") else None
        lines.append(f"| {r['contender']} | {r['open']:,} | {r.get('held', 0):,} | {p.get('answered', 0)}/{p.get('probed', 0)} | "
                     f"{rps(r):,.0f} | {us(r.get('p99_us'))} | {r['errors']} | {mib(r['rss_kb'])} | "
                     f"{(f'{per:,.0f} B' if per and per > 0 else '-')} |")
    lines.append("")

# Plots.
plots = []
for wl in ("plaintext", "json"):
    rs = [r for r in peak if r["workload"] == wl]
    if not rs:
        continue
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for c in order:
        pts = sorted((r["conns"], rps(r)) for r in rs if r["contender"] == c)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=c)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("connections")
    ax.set_ylabel("requests/s")
    ax.set_title(f"{wl}{' (pipelined ×16)' if wl == 'plaintext' else ''}: throughput vs concurrency ({m['commit']})")
    ax.grid(True, alpha=0.3)
    ax.legend()
    name = f"throughput-{wl}.png"
    fig.tight_layout()
    fig.savefig(os.path.join(d, name), dpi=110)
    plt.close(fig)
    plots.append(name)
if fixed:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = [f"{r['contender']}\n{r['percent_of_peak']}%" for r in sorted(fixed, key=lambda r: (order.index(r["contender"]), r["percent_of_peak"]))]
    rows = sorted(fixed, key=lambda r: (order.index(r["contender"]), r["percent_of_peak"]))
    xs = range(len(rows))
    for i, (k, lab) in enumerate((("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))):
        ax.bar([x + (i - 1) * 0.27 for x in xs], [max(r.get(k) or 0, 1) for r in rows], width=0.27, label=lab)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency (µs, corrected for coordinated omission)")
    ax.set_title("json at fixed rates: latency percentiles")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(d, "latency-fixed-rate.png"), dpi=110)
    plt.close(fig)
    plots.append("latency-fixed-rate.png")
lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
lines += ["Reproduce: `scripts/bench.sh" + (" --quick" if m.get("quick") else "") + "` (root; brings the testbed up)", ""]
open(os.path.join(d, "results.md"), "w").write("\n".join(lines))

if readme:
    text = open(readme).read()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        sys.exit(f"bench-report: {readme} has no {start} ... {end} block")
    block = [start, "",
             f"Side by side on the veth testbed, server on CPU {m['server_cpu']}, load on CPU {m['load_cpu']}, "
             f"{m['date'][:10]}, commit `{m['commit']}`, kernel {m['kernel']} "
             f"([full results and plots]({os.path.relpath(os.path.join(d, 'results.md'), os.path.dirname(os.path.abspath(readme)))})). "
             "Reproduce with `scripts/bench.sh --readme`.", ""] + summary + ["", end]
    pre, rest = text.split(start, 1)
    post = rest.split(end, 1)[1]
    open(readme, "w").write(pre + "\n".join(block) + post)
if "--check" in sys.argv:
    bad = [f"{r['contender']} {r['mode']} {r['workload']} c={r['conns']}" for r in runs if not rps(r) or r.get("failed")]
    if bad:
        sys.exit("bench-report: runs without results: " + ", ".join(bad))
print(os.path.join(d, "results.md"))
