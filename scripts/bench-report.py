#!/usr/bin/env python3
"""Turns a scripts/bench.sh run (DIR/runs.jsonl + DIR/machine.json) into DIR/results.md
(markdown tables) and PNG plots: throughput against concurrency per workload, and
latency percentiles of the fixed-rate runs. Each figure is the median of the run's
rounds with min–max beside it; the plots draw the spread as error bars. With
--readme FILE, also puts the summary table between the '<!-- bench:start -->' and
'<!-- bench:end -->' markers of FILE. With --check, exits non-zero if any run produced
no throughput (quick mode in CI).
Usage: bench-report.py DIR [--readme README.md] [--check]"""
import json, os, statistics, sys

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


# Groups: one per point (mode, workload, conns, contender, and the share of peak or the
# number held open); the rounds of a point are its members.
def key(r):
    return (r["mode"], r["workload"], r["conns"], r["contender"], r.get("percent_of_peak"), r.get("open"))


groups = {}
for r in runs:
    groups.setdefault(key(r), []).append(r)
points = [dict(rs=rs, **{k: rs[0].get(k) for k in ("mode", "workload", "conns", "contender", "percent_of_peak", "open")})
          for rs in groups.values()]
rounds = max((len(p["rs"]) for p in points), default=0)


def vals(p, f):
    return [v for v in (f(r) for r in p["rs"]) if v is not None and v != 0]


def med(p, f):
    vs = vals(p, f)
    return statistics.median(vs) if vs else None


def spread(p, f, fmt):
    """'median (min–max)', or the value alone with one round, or '-'."""
    vs = vals(p, f)
    if not vs:
        return "-"
    if len(vs) == 1:
        return fmt(vs[0])
    return f"{fmt(statistics.median(vs))} ({fmt(min(vs))}–{fmt(max(vs))})"


def n0(v):
    return f"{v:,.0f}"


def n2(v):
    return f"{v:.2f}"


def n3(v):
    return f"{v:.3f}"


def pct(v):
    return "-" if v is None else f"{v * 100:.0f} %"


def ms(v):
    return f"{v / 1000:.2f}"


def field(k):
    return lambda r: r.get(k)


def errors(p):
    return sum(r.get("errors", 0) for r in p["rs"])


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


lines = [f"# Benchmark results {'(quick)' if m.get('quick') else ''}", "",
         f"- date {m['date']}, commit `{m['commit']}`, kernel {m['kernel']}, {m['cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB",
         f"- link: {m['link']}; server pinned to CPU {m['server_cpu']}, load generators to CPU {m['load_cpu']}; {m['secs']} s per run",
         f"- every figure is the median of {rounds} round(s), min–max in brackets; the rounds interleave the contenders "
         "(each round runs each contender once, in an order rotated every round)",
         "- peak: wrk closed loop, keep-alive (plaintext pipelined ×16, json not pipelined); latency percentiles from wrk "
         "(per pipelined batch for plaintext; '-' where wrk gave none). fixed: px-load open loop at a share of the contender's json peak "
         "in that round, 64 connections, latency from each request's scheduled time (coordinated omission corrected).",
         "- server µs/req: user+system CPU of the server's processes (/proc). core µs/req: everything that ran on the server's CPU "
         "(/proc/stat: the kernel's receive work for the server, its pinned NAPI thread, included) — the figure that tells fast "
         "servers apart when the client core is the limit. loop µs/req (px-appliance): time in loop turns that handled frames "
         "(admin /stats), the rest of its CPU is polling. pkts/B per req: px-client0's counters (in = received by the client). "
         "client core busy: the share of the load CPU's time that was busy during the run (near 100 %: the load generator is the "
         "limit, and its own queueing is in the latency it measures).", ""]

peak = [p for p in points if p["mode"] == "peak"]
base = {(p["workload"], p["conns"]): med(p, rps) for p in peak if p["contender"] == "px-af-xdp"}
summary = ["| contender | workload | conns | req/s | vs px-af-xdp | p99 ms | errors | server µs/req | core µs/req | loop µs/req | client core busy |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
link = ["| contender | workload | conns | pkts/req in | pkts/req out | B/req in | B/req out | RSS |", "|---|---|---|---|---|---|---|---|"]
for wl in ("plaintext", "json"):
    for p in sorted((p for p in peak if p["workload"] == wl), key=lambda p: (p["conns"], order.index(p["contender"]))):
        b = base.get((wl, p["conns"]))
        mr = med(p, rps)
        ratio = f"{mr / b:.2f}×" if b and mr else "-"
        name = f"{wl}{' ×16' if wl == 'plaintext' else ''}"
        summary.append(f"| {p['contender']} | {name} | {p['conns']} | {spread(p, rps, n0)} | {ratio} | "
                       f"{spread(p, field('p99_us'), ms)} | {errors(p)} | {spread(p, field('server_cpu_us_per_req'), n2)} | "
                       f"{spread(p, field('server_core_us_per_req'), n2)} | {spread(p, field('loop_work_us_per_req'), n2)} | "
                       f"{spread(p, field('load_core_busy'), pct)} |")
        link.append(f"| {p['contender']} | {name} | {p['conns']} | {spread(p, field('client_rx_pkts_per_req'), n3)} | "
                    f"{spread(p, field('client_tx_pkts_per_req'), n3)} | {spread(p, field('client_rx_bytes_per_req'), n0)} | "
                    f"{spread(p, field('client_tx_bytes_per_req'), n0)} | {mib(med(p, field('rss_kb')) or 0)} |")
if peak:
    lines += ["## Peak throughput", ""] + summary + [""]
    lines += ["## On the link, per request (px-client0's counters)", "",
              "Frames and bytes the client received (in) and sent (out) per request: every contender should put the same "
              "kind of frames on the link (docs/operations.md, \"A fair link\").", ""] + link + [""]

dbr = [p for p in points if p["mode"] == "db"]
if dbr:
    lines += ["## TechEmpower database tests (PostgreSQL on the load CPU, one connection per server core)", "",
              "Requests per second of server CPU is the figure to compare: the database shares the machine, and "
              "every contender reaches it through the same relay. db/relay µs/req: CPU the database's processes "
              "and the relay spent per request.", "",
              "| contender | workload | conns | req/s | vs px-af-xdp | p99 ms | errors | server µs/req | req/s per server CPU | db µs/req | relay µs/req |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    dbase = {(p["workload"], p["conns"]): med(p, rps) for p in dbr if p["contender"] == "px-af-xdp"}
    names = {"db": "db", "queries20": "queries (20)", "fortunes": "fortunes", "updates20": "updates (20)"}
    per_cpu = lambda r: 1e6 / r["server_cpu_us_per_req"] if r.get("server_cpu_us_per_req") else None
    for wl in ("db", "queries20", "fortunes", "updates20"):
        for p in sorted((p for p in dbr if p["workload"] == wl), key=lambda p: (p["conns"], order.index(p["contender"]))):
            b = dbase.get((wl, p["conns"]))
            mr = med(p, rps)
            ratio = f"{mr / b:.2f}×" if b and mr else "-"
            lines.append(f"| {p['contender']} | {names[wl]} | {p['conns']} | {spread(p, rps, n0)} | {ratio} | "
                         f"{spread(p, field('p99_us'), ms)} | {errors(p)} | {spread(p, field('server_cpu_us_per_req'), n2)} | "
                         f"{spread(p, per_cpu, n0)} | {spread(p, field('db_cpu_us_per_req'), n2)} | "
                         f"{spread(p, field('relay_cpu_us_per_req'), n2)} |")
    lines.append("")

fixed = sorted((p for p in points if p["mode"] == "fixed"), key=lambda p: (order.index(p["contender"]), p["percent_of_peak"]))
if fixed:
    lines += ["## Fixed-rate latency (json, 64 connections, open loop)", "",
              "p99/p50: the tail against the median (PyParallel claimed worst < 3× mean; the goal here is p99 ≤ 3× p50 at 80 %).", "",
              "| contender | % of its peak | target req/s | achieved | p50 ms | p99 ms | p99.9 ms | p99/p50 | errors | server µs/req | core µs/req | loop µs/req | client core busy |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratio = lambda r: r["p99_us"] / r["p50_us"] if r.get("p50_us") and r.get("p99_us") else None
    for p in fixed:
        lines.append(f"| {p['contender']} | {p['percent_of_peak']} % | {spread(p, field('target_rps'), n0)} | {spread(p, rps, n0)} | "
                     f"{spread(p, field('p50_us'), ms)} | {spread(p, field('p99_us'), ms)} | {spread(p, field('p999_us'), ms)} | "
                     f"{spread(p, ratio, n2)} | {errors(p)} | {spread(p, field('server_cpu_us_per_req'), n2)} | "
                     f"{spread(p, field('server_core_us_per_req'), n2)} | {spread(p, field('loop_work_us_per_req'), n2)} | "
                     f"{spread(p, field('load_core_busy'), pct)} |")
    lines.append("")

scale = sorted((p for p in points if p["mode"] == "scale"), key=lambda p: (order.index(p["contender"]), p["open"]))
if scale:
    lines += ["## Connection scaling (N held open and idle, 64 active running json)", "",
              "| contender | open | held | idle ones answering (sample) | req/s (64 active) | p99 ms | errors | RSS | RSS per held conn |",
              "|---|---|---|---|---|---|---|---|---|"]
    low = min((p["conns"] for p in peak), default=0)
    idle = {p["contender"]: med(p, field("rss_kb")) for p in peak if p["conns"] == low}
    for p in scale:
        r = p["rs"][-1]
        pr = r.get("idle_probe", {})
        per_conn = lambda r: ((r["rss_kb"] - (idle.get(r["contender"]) or 0)) * 1024 / r["held"]) if r.get("held") else None
        pc = med(p, per_conn)
        lines.append(f"| {p['contender']} | {p['open']:,} | {spread(p, field('held'), n0)} | {pr.get('answered', 0)}/{pr.get('probed', 0)} | "
                     f"{spread(p, rps, n0)} | {spread(p, field('p99_us'), ms)} | {errors(p)} | {mib(med(p, field('rss_kb')) or 0)} | "
                     f"{(f'{pc:,.0f} B' if pc and pc > 0 else '-')} |")
    lines.append("")


def errbars(p, f):
    vs = vals(p, f)
    if not vs:
        return None
    mid = statistics.median(vs)
    return mid, mid - min(vs), max(vs) - mid


# Plots: the median as the point, min–max as the error bar.
plots = []
for wl in ("plaintext", "json"):
    ps = [p for p in peak if p["workload"] == wl]
    if not ps:
        continue
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for c in order:
        pts = sorted((p["conns"], errbars(p, rps)) for p in ps if p["contender"] == c and errbars(p, rps))
        if pts:
            ax.errorbar([x for x, _ in pts], [e[0] for _, e in pts], yerr=[[e[1] for _, e in pts], [e[2] for _, e in pts]],
                        marker="o", capsize=3, label=c)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("connections")
    ax.set_ylabel("requests/s (median, bars: min–max)")
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
    labels = [f"{p['contender']}\n{p['percent_of_peak']}%" for p in fixed]
    xs = range(len(fixed))
    for i, (k, lab) in enumerate((("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))):
        eb = [errbars(p, field(k)) or (1, 0, 0) for p in fixed]
        ax.bar([x + (i - 1) * 0.27 for x in xs], [max(e[0], 1) for e in eb], width=0.27, label=lab,
               yerr=[[e[1] for e in eb], [e[2] for e in eb]], capsize=2)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("latency µs (CO-corrected; median, bars: min–max)")
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
             f"Side by side on the veth testbed ({m.get('link_model', 'raw')} link), server on CPU {m['server_cpu']}, load on CPU "
             f"{m['load_cpu']}, {m['date'][:10]}, commit `{m['commit']}`, kernel {m['kernel']}; medians of {rounds} interleaved "
             f"rounds, min–max in brackets ([full results and plots]({os.path.relpath(os.path.join(d, 'results.md'), os.path.dirname(os.path.abspath(readme)))})). "
             "Reproduce with `scripts/bench.sh --readme`.", ""] + summary + ["", end]
    pre, rest = text.split(start, 1)
    post = rest.split(end, 1)[1]
    open(readme, "w").write(pre + "\n".join(block) + post)
if "--check" in sys.argv:
    bad = [f"{r['contender']} {r['mode']} {r['workload']} c={r['conns']}" for r in runs if not rps(r) or r.get("failed")]
    if bad:
        sys.exit("bench-report: runs without results: " + ", ".join(bad))
    # Every run must have its link counters, and px-appliance's its loop work (admin /stats).
    bad = [f"{r['contender']} {r['mode']} {r['workload']}" for r in runs
           if r.get("client_rx_pkts_per_req") is None or r.get("server_core_us_per_req") is None
           or (r["contender"].startswith("px-") and r.get("loop_work_us_per_req") is None)]
    if bad:
        sys.exit("bench-report: runs without link counters or loop work: " + ", ".join(bad))
print(os.path.join(d, "results.md"))
