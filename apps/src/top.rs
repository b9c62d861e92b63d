//! `px-appliance top`: a live view of a running appliance, read from its admin
//! listener's `/stats` once per interval, like `top`.
//!
//! Each frame shows, per queue and in all, what happened during the last interval:
//! requests per second, frames per second in and out (AF_XDP), drops per second with
//! their largest causes, the loop's busy share of its core, connections held, and the
//! median and 99th percentile of request latency (from the histograms' counts in the
//! interval, interpolated inside a bucket as Prometheus does).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use px_dataplane::stats::{Histogram, BUCKET_BOUNDS_US};
use serde_json::Value;

/// One reading of `/stats`, with when it was taken.
pub struct Reading {
    at: Instant,
    doc: Value,
}

/// Fetches `/stats` from the admin listener at `addr`.
pub fn read(addr: SocketAddr) -> Result<Reading> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(|| {
        format!(
            "cannot reach the admin listener on {addr} (is px-appliance running, with [admin] listen = \"{addr}\"?)"
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: px\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).context("reading /stats")?;
    let at = Instant::now();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").context("no HTTP head in the answer")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{addr}/stats answered {}", head.lines().next().unwrap_or(""));
    }
    let doc = serde_json::from_slice(&buf[split + 4..]).context("/stats is not JSON")?;
    Ok(Reading { at, doc })
}

/// One queue's (or the sum's) figures over an interval.
#[derive(Debug, Default, Clone)]
struct Row {
    req: f64,
    pps_in: Option<f64>,
    pps_out: Option<f64>,
    drops: Vec<(String, f64)>,
    busy: f64,
    conns: u64,
    latency: Histogram,
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn latency_of(q: &Value) -> Histogram {
    let mut h = Histogram::default();
    if let Some(counts) = q["latency"]["counts"].as_array() {
        for (slot, c) in h.counts.iter_mut().zip(counts) {
            *slot = num(c);
        }
    }
    h.sum_ns = num(&q["latency"]["sum_ns"]);
    h
}

/// Is this counter a drop (a frame, segment or connection lost on purpose or by lack
/// of room)?
fn is_drop(name: &str) -> bool {
    name.starts_with("drop_")
        || name.contains("_drops")
        || matches!(name, "kernel_rx_dropped" | "tx_ring_full" | "injected_drops" | "tcp_syn_dropped")
}

fn row(prev: &Value, cur: &Value, secs: f64) -> Row {
    let counter = |q: &Value, k: &str| num(&q["counters"][k]);
    let rate = |k: &str| counter(cur, k).saturating_sub(counter(prev, k)) as f64 / secs;
    let stack = cur["counters"].get("rx_packets").is_some();
    let mut drops: Vec<(String, f64)> = cur["counters"]
        .as_object()
        .map(|m| m.keys().filter(|k| is_drop(k)).map(|k| (k.clone(), rate(k))).filter(|(_, r)| *r > 0.0).collect())
        .unwrap_or_default();
    drops.sort_by(|a, b| b.1.total_cmp(&a.1));
    let busy_ns = num(&cur["loop"]["busy_ns"]).saturating_sub(num(&prev["loop"]["busy_ns"]));
    Row {
        req: num(&cur["requests"]).saturating_sub(num(&prev["requests"])) as f64 / secs,
        pps_in: stack.then(|| rate("rx_packets")),
        pps_out: stack.then(|| rate("tx_packets")),
        drops,
        busy: busy_ns as f64 / (secs * 1e9),
        conns: num(&cur["connections"]),
        latency: latency_of(cur).since(&latency_of(prev)),
    }
}

fn sum(rows: &[Row]) -> Row {
    let mut t = Row::default();
    let opt_add = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    for r in rows {
        t.req += r.req;
        t.pps_in = opt_add(t.pps_in, r.pps_in);
        t.pps_out = opt_add(t.pps_out, r.pps_out);
        t.busy += r.busy;
        t.conns += r.conns;
        t.latency.merge(&r.latency);
        for (k, v) in &r.drops {
            match t.drops.iter_mut().find(|(n, _)| n == k) {
                Some((_, s)) => *s += v,
                None => t.drops.push((k.clone(), *v)),
            }
        }
    }
    t.drops.sort_by(|a, b| b.1.total_cmp(&a.1));
    t
}

fn si(x: f64) -> String {
    match x {
        x if x >= 10e6 => format!("{:.1}M", x / 1e6),
        x if x >= 10e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

fn us(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x >= 1000.0 => format!("{:.1}ms", x / 1000.0),
        Some(x) => format!("{x:.0}us"),
    }
}

fn line(out: &mut String, name: &str, r: &Row) {
    let pps = |p: Option<f64>| p.map_or("-".into(), si);
    let drops = r.drops.iter().fold(0.0, |a, (_, v)| a + v);
    let causes: Vec<String> = r.drops.iter().take(3).map(|(k, v)| format!("{k} {}", si(*v))).collect();
    let _ = writeln!(
        out,
        "{name:>5} {:>9} {:>9} {:>9} {:>8} {:>5.1}% {:>8} {:>8} {:>8}  {}",
        si(r.req),
        pps(r.pps_in),
        pps(r.pps_out),
        si(drops),
        r.busy * 100.0,
        r.conns,
        us(r.latency.quantile_us(0.5)),
        us(r.latency.quantile_us(0.99)),
        causes.join(", ")
    );
}

/// The frame for the interval between two readings.
pub fn render(prev: &Reading, cur: &Reading) -> String {
    let secs = cur.at.duration_since(prev.at).as_secs_f64().max(1e-3);
    let (p, c) = (&prev.doc, &cur.doc);
    let mut out = String::new();
    let mib = |k: &str| num(&c["process"][k]) as f64 / (1 << 20) as f64;
    let up = num(&c["uptime_ms"]) / 1000;
    let _ = writeln!(
        out,
        "px-appliance {} ({}) — {} backend{}, up {}h{:02}m{:02}s, RSS {:.0} MiB (anon {:.0}, file {:.0}), hugetlb {:.0} MiB{}",
        c["version"].as_str().unwrap_or("?"),
        c["build"]["commit"].as_str().unwrap_or("?"),
        c["backend"].as_str().unwrap_or("?"),
        c["xdp_mode"].as_str().map(|m| format!(" ({m})")).unwrap_or_default(),
        up / 3600,
        up / 60 % 60,
        up % 60,
        mib("resident_bytes"),
        mib("resident_anon_bytes"),
        mib("resident_file_bytes"),
        mib("hugetlb_bytes"),
        if c["draining"] == true { ", DRAINING" } else { "" },
    );
    let _ = writeln!(
        out,
        "{:>5} {:>9} {:>9} {:>9} {:>8} {:>6} {:>8} {:>8} {:>8}  drops by cause (/s)",
        "queue", "req/s", "pps in", "pps out", "drops/s", "busy", "conns", "p50", "p99"
    );
    let empty = Vec::new();
    let (pq, cq) = (p["queues"].as_array().unwrap_or(&empty), c["queues"].as_array().unwrap_or(&empty));
    let rows: Vec<Row> = cq.iter().zip(pq).map(|(c, p)| row(p, c, secs)).collect();
    for (i, r) in rows.iter().enumerate() {
        line(&mut out, &i.to_string(), r);
    }
    if rows.len() > 1 {
        line(&mut out, "all", &sum(&rows));
    }
    let _ = writeln!(
        out,
        "(over the last {secs:.1} s; latency from the turn that takes a request up to its response queued, \
         buckets up to {} s)",
        BUCKET_BOUNDS_US[BUCKET_BOUNDS_US.len() - 1] / 1_000_000
    );
    out
}

/// Runs the view: a frame every `interval`, `iterations` times (0: until interrupted).
/// On a terminal each frame replaces the last; otherwise frames follow each other.
pub fn run(addr: SocketAddr, interval: Duration, iterations: u64) -> Result<()> {
    use std::io::IsTerminal;
    let tty = std::io::stdout().is_terminal();
    let mut prev = read(addr)?;
    let mut n = 0;
    while iterations == 0 || n < iterations {
        std::thread::sleep(interval);
        let cur = read(addr)?;
        let frame = render(&prev, &cur);
        let mut stdout = std::io::stdout().lock();
        if tty {
            write!(stdout, "\x1b[H\x1b[2J")?;
        } else if n > 0 {
            writeln!(stdout)?;
        }
        write!(stdout, "{frame}")?;
        stdout.flush()?;
        prev = cur;
        n += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reading(at: Instant, requests: u64, rx: u64, drops: u64, busy_ns: u64, lat_counts: Vec<u64>) -> Reading {
        let q = json!({
            "requests": requests, "connections": 7, "loop": {"busy_ns": busy_ns},
            "counters": {"rx_packets": rx, "tx_packets": rx, "drop_bad_checksum": drops, "tcp_reset": 5},
            "latency": {"counts": lat_counts, "sum_ns": 0},
        });
        Reading {
            at,
            doc: json!({"version": "0.1.0", "backend": "af-xdp", "uptime_ms": 3_723_000, "queues": [q.clone(), q]}),
        }
    }

    #[test]
    fn a_frame_shows_rates_busy_share_drops_and_latency_over_the_interval() {
        let t0 = Instant::now();
        let mut counts = vec![0u64; BUCKET_BOUNDS_US.len() + 1];
        let a = reading(t0, 1000, 500, 0, 0, counts.clone());
        counts[3] = 100; // 100 requests in (50, 100] µs
        let b = reading(t0 + Duration::from_secs(2), 21_000, 4500, 40, 500_000_000, counts);
        let f = render(&a, &b);
        let q0 = f.lines().find(|l| l.trim_start().starts_with("0 ")).expect(&f);
        // 20,000 requests in 2 s; 4,000 frames in 2 s; 40 drops in 2 s; 0.5 s busy in 2 s.
        assert!(q0.contains("10.0k"), "{q0}");
        assert!(q0.contains(" 2000 "), "{q0}");
        assert!(q0.contains(" 20 "), "{q0}");
        assert!(q0.contains("25.0%"), "{q0}");
        assert!(q0.contains("drop_bad_checksum 20"), "{q0}");
        assert!(q0.contains("75us") && q0.contains("100us"), "p50 75 µs, p99 ≈ 100 µs: {q0}");
        let all = f.lines().find(|l| l.trim_start().starts_with("all")).expect(&f);
        assert!(all.contains("20.0k") && all.contains("50.0%") && all.contains(" 14 "), "{all}");
        assert!(f.contains("up 1h02m03s"), "{f}");
    }
}
