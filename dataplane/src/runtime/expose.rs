//! What the admin listener says: `/stats` as JSON and `/metrics` in Prometheus's text
//! format (0.0.4), both from the reports the cores publish when asked
//! ([`super::gauge`]) and from /proc for the process.
//!
//! Every counter a layer declares with [`crate::counters!`] is listed under the name the
//! exit report gives it (`tcp_` before the TCP engine's, `tasks_` before the executor's,
//! `upstream_` before the outbound connections', none before the rings', the network
//! layer's and the packet loop's), with its doc comment as help text.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::gauge::LoopSnapshot;
use super::CoreReport;
use crate::http::REJECT_STATUSES;
use crate::stats::{Counters, Histogram, BUCKET_BOUNDS_US};
use crate::tcp::State;

/// A counter only grows; a gauge is a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

/// One named figure of one queue.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub name: String,
    pub help: &'static str,
    pub kind: Kind,
    pub value: u64,
}

/// One queue's published state: the loop gauge and the core's last report (None if the
/// core never answered), and whether that report is from this scrape.
pub(crate) struct QueueView {
    pub queue: usize,
    pub gauge: LoopSnapshot,
    pub report: Option<std::sync::Arc<CoreReport>>,
    pub fresh: bool,
}

/// Every figure of one queue, in a fixed order (the same for every queue).
pub(crate) fn figures(g: &LoopSnapshot, r: &CoreReport) -> Vec<Figure> {
    let mut out = Vec::with_capacity(160);
    let mut put = |name: String, help: &'static str, kind: Kind, value: u64| {
        out.push(Figure { name, help: help.trim(), kind, value });
    };
    let c = Kind::Counter;
    put("loop_busy_ns".into(), "Time in loop turns that did work, ns.", c, g.busy_ns);
    put("loop_busy_turns".into(), "Loop turns that did work.", c, g.busy_turns);
    put("loop_idle_turns".into(), "Loop turns that found nothing.", c, g.idle_turns);
    let h = &r.http;
    put("http_requests".into(), "Requests whose head parsed.", c, h.requests);
    for (class, n) in h.responses_by_class.iter().enumerate().skip(1) {
        let name = format!("http_{class}xx");
        put(name, "Responses queued, by status class.", c, *n);
    }
    put("http_rejected".into(), "Requests refused before routing.", c, h.rejected);
    for (status, n) in REJECT_STATUSES.iter().zip(h.rejected_by_status) {
        let name = if *status == 0 { "http_rejected_other".into() } else { format!("http_rejected_{status}") };
        put(name, "Requests refused before routing, by the status answered.", c, n);
    }
    put("http_head_timeouts".into(), "Heads not complete within header_timeout_ms (408).", c, h.head_timeouts);
    put("http_body_timeouts".into(), "Bodies not complete within body_timeout_ms (408).", c, h.body_timeouts);
    put("http_panics".into(), "Handlers that panicked (500).", c, h.handler_panics);
    put("http_arena_failures".into(), "Arena allocations that failed (503).", c, h.arena_failures);
    put("http_bytes_in".into(), "HTTP bytes received.", c, h.bytes_in);
    put("http_bytes_out".into(), "HTTP bytes handed to the transport.", c, h.bytes_out);
    put(
        "http_body_bytes_by_reference".into(),
        "Body bytes queued by reference, not copied.",
        c,
        h.body_bytes_by_reference,
    );
    each(&r.exec, "tasks_", &mut put);
    each(&r.outbound, "upstream_", &mut put);
    each(&r.files, "", &mut put);
    put("accepted".into(), "Connections accepted (kernel backend).", c, r.accepted);
    put("conn_refused_per_core".into(), "Connections refused over kernel.max_connections.", c, r.refused_over_cap.0);
    put(
        "conn_refused_per_source".into(),
        "Connections refused over kernel.max_connections_per_source.",
        c,
        r.refused_over_cap.1,
    );
    put("arena_exhausted".into(), "Requests for an arena chunk that found the pool empty.", c, r.pool.exhausted);
    let gauge = Kind::Gauge;
    put("connections".into(), "Connections the transport holds (TIME-WAIT included on AF_XDP).", gauge, g.connections);
    put("arena_chunks_free".into(), "Arena chunks free in the core's pool.", gauge, r.pool.chunks_free as u64);
    put("arena_chunks_total".into(), "Arena chunks in the core's pool.", gauge, r.pool.chunks_total as u64);
    put("arena_chunks_free_min".into(), "Fewest arena chunks free since start.", gauge, r.pool.chunks_free_min as u64);
    put("jobs_control_queued".into(), "Jobs waiting for the control thread.", gauge, r.jobs.control_queued as u64);
    put("jobs_io_queued".into(), "Jobs waiting for an I/O thread.", gauge, r.jobs.io_queued as u64);
    put("jobs_outstanding".into(), "This core's jobs not yet answered.", gauge, r.jobs.outstanding as u64);
    if let Some((http, clients, lingering)) = r.kernel_conns {
        put("kernel_http_connections".into(), "HTTP connections open (kernel backend).", gauge, http);
        put("kernel_client_connections".into(), "Outbound client connections (kernel backend).", gauge, clients);
        put(
            "kernel_lingering_connections".into(),
            "Connections lingering after our close (kernel backend).",
            gauge,
            lingering,
        );
    }
    if let Some(s) = &r.stack {
        each(&s.io, "", &mut put);
        each(&s.net, "", &mut put);
        each(&s.turns, "", &mut put);
        each(&s.tcp, "tcp_", &mut put);
        put("tcp_forwarded".into(), "TCP segments handed to the queue that owns their flow.", c, s.forwarded.0);
        put("tcp_forward_drops".into(), "TCP segments to another queue dropped (its inbox full).", c, s.forwarded.1);
        if let Some(f) = s.frames {
            put("umem_frames".into(), "UMEM frames in all.", gauge, f.total);
            put("umem_frames_tx_free".into(), "UMEM frames free for transmitting.", gauge, f.tx_free);
            put("umem_frames_with_kernel".into(), "UMEM frames in the kernel's rings.", gauge, f.with_kernel());
            put("umem_frames_rx_refill".into(), "UMEM frames waiting to go back to the fill ring.", gauge, f.rx_refill);
        }
    }
    out
}

fn each<C: Counters>(c: &C, prefix: &str, put: &mut impl FnMut(String, &'static str, Kind, u64)) {
    c.each(&mut |name, help, value| put(format!("{prefix}{name}"), help, Kind::Counter, value));
}

/// The process's memory from /proc/self/status and the host's hugepages from
/// /proc/meminfo, bytes.
pub(crate) fn process_memory() -> Vec<(&'static str, &'static str, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let page = kib(&meminfo, "Hugepagesize") * 1024;
    vec![
        ("resident_bytes", "Resident memory (VmRSS).", kib(&status, "VmRSS") * 1024),
        ("resident_anon_bytes", "Resident anonymous memory (RssAnon).", kib(&status, "RssAnon") * 1024),
        ("resident_file_bytes", "Resident file-backed memory (RssFile).", kib(&status, "RssFile") * 1024),
        ("resident_shmem_bytes", "Resident shared memory (RssShmem).", kib(&status, "RssShmem") * 1024),
        ("hugetlb_bytes", "Hugepage memory mapped by the process (HugetlbPages).", kib(&status, "HugetlbPages") * 1024),
        ("host_hugepages_total_bytes", "Hugepages reserved on the host.", kib(&meminfo, "HugePages_Total") * page),
        ("host_hugepages_free_bytes", "Hugepages free on the host.", kib(&meminfo, "HugePages_Free") * page),
    ]
}

/// Route labels and the latency of each queue's requests, merged over the queues, per
/// (route, class).
fn latency_by_route(views: &[QueueView], labels: &[&'static str]) -> Vec<(String, String, Histogram)> {
    let mut merged: Vec<(usize, u8, Histogram)> = Vec::new();
    for r in views.iter().filter_map(|v| v.report.as_deref()) {
        r.latency.each(|route, class, h| match merged.iter_mut().find(|(a, b, _)| *a == route && *b == class) {
            Some((_, _, m)) => m.merge(h),
            None => merged.push((route, class, *h)),
        });
    }
    merged.sort_by_key(|(r, c, _)| (*r, *c));
    merged
        .into_iter()
        .map(|(r, c, h)| (labels.get(r).copied().unwrap_or("?").to_string(), format!("{c}xx"), h))
        .collect()
}

fn hist_json(h: &Histogram) -> Value {
    json!({
        "count": h.count(),
        "sum_ns": h.sum_ns,
        "p50_us": h.quantile_us(0.5),
        "p99_us": h.quantile_us(0.99),
        "counts": h.counts.to_vec(),
    })
}

/// The `/stats` document.
pub(crate) fn stats_json(about: &super::admin::About, views: &[QueueView]) -> String {
    let queues: Vec<Value> = views.iter().map(queue_json).collect();
    let memory: Map<String, Value> = process_memory().into_iter().map(|(k, _, v)| (k.to_string(), json!(v))).collect();
    let latency: Vec<Value> = latency_by_route(views, &about.routes)
        .iter()
        .map(|(route, class, h)| {
            let mut o = hist_json(h);
            o["route"] = json!(route);
            o["class"] = json!(class);
            o
        })
        .collect();
    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "build": build_json(),
        "backend": about.backend,
        "xdp_mode": about.xdp_mode,
        "uptime_ms": about.started.elapsed().as_millis() as u64,
        "draining": about.draining.load(std::sync::atomic::Ordering::Acquire),
        "config": about.config,
        "process": memory,
        "latency_bounds_us": BUCKET_BOUNDS_US.to_vec(),
        "latency": latency,
        "queues": queues,
    });
    let mut s = doc.to_string();
    s.push('\n');
    s
}

fn build_json() -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("PX_GIT_COMMIT"),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "features": Vec::<&str>::new(),
    })
}

fn queue_json(v: &QueueView) -> Value {
    let g = &v.gauge;
    let mut q = json!({
        "queue": v.queue,
        "requests": g.requests,
        "responses": g.responses,
        "connections": g.connections,
        "arena_chunks_free": g.arena_chunks_free,
        "loop": {"busy_ns": g.busy_ns, "busy_turns": g.busy_turns, "idle_turns": g.idle_turns},
        "report_fresh": v.fresh,
    });
    let Some(r) = v.report.as_deref() else { return q };
    let (mut counters, mut gauges) = (Map::new(), Map::new());
    for f in figures(g, r) {
        let to = if f.kind == Kind::Counter { &mut counters } else { &mut gauges };
        to.insert(f.name, json!(f.value));
    }
    q["cpu"] = json!(r.cpu);
    q["counters"] = Value::Object(counters);
    q["gauges"] = Value::Object(gauges);
    q["latency"] = hist_json(&r.latency.total());
    if let Some((http, clients, lingering)) = r.kernel_conns {
        q["kernel_conns"] = json!({"http": http, "clients": clients, "lingering": lingering});
    }
    if let Some(s) = &r.stack {
        let states: Map<String, Value> =
            State::ALL.iter().zip(s.census.by_state).map(|(st, n)| (st.label().to_string(), json!(n))).collect();
        q["tcp_states"] = Value::Object(states);
        q["tcp_srtt_open"] = hist_json(&s.census.srtt);
        q["tcp_srtt_at_close"] = hist_json(&s.rtt_at_close);
    }
    q
}

/// The `/metrics` exposition.
pub(crate) fn metrics_text(about: &super::admin::About, views: &[QueueView]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let w = &mut out;
    let _ = writeln!(w, "# HELP px_build_info Build of the running appliance.\n# TYPE px_build_info gauge");
    let _ = writeln!(
        w,
        "px_build_info{{version=\"{}\",commit=\"{}\",backend=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("PX_GIT_COMMIT"),
        about.backend
    );
    let up = about.started.elapsed().as_secs_f64();
    let _ = writeln!(
        w,
        "# HELP px_uptime_seconds Time since start.\n# TYPE px_uptime_seconds gauge\npx_uptime_seconds {up:.3}"
    );
    let draining = u8::from(about.draining.load(std::sync::atomic::Ordering::Acquire));
    let _ = writeln!(w, "# HELP px_draining 1 while shutting down.\n# TYPE px_draining gauge\npx_draining {draining}");
    for (name, help, v) in process_memory() {
        let _ = writeln!(w, "# HELP px_process_{name} {help}\n# TYPE px_process_{name} gauge\npx_process_{name} {v}");
    }
    let per_queue: Vec<(usize, Vec<Figure>)> =
        views.iter().filter_map(|v| Some((v.queue, figures(&v.gauge, v.report.as_deref()?)))).collect();
    if let Some((_, first)) = per_queue.first() {
        for (i, f) in first.iter().enumerate() {
            let (name, kind) = match f.kind {
                Kind::Counter => (format!("px_{}_total", f.name), "counter"),
                Kind::Gauge => (format!("px_{}", f.name), "gauge"),
            };
            let _ = writeln!(w, "# HELP {name} {}\n# TYPE {name} {kind}", escape_help(f.help));
            for (q, figs) in &per_queue {
                if let Some(f) = figs.get(i) {
                    let _ = writeln!(w, "{name}{{queue=\"{q}\"}} {}", f.value);
                }
            }
        }
    }
    let states: Vec<(usize, [u64; 9])> =
        views.iter().filter_map(|v| Some((v.queue, v.report.as_deref()?.stack.as_ref()?.census.by_state))).collect();
    if !states.is_empty() {
        let _ = writeln!(w, "# HELP px_tcp_connections Connections of the TCP engine by state.");
        let _ = writeln!(w, "# TYPE px_tcp_connections gauge");
        for (q, by) in &states {
            for (st, n) in State::ALL.iter().zip(by) {
                let _ = writeln!(w, "px_tcp_connections{{queue=\"{q}\",state=\"{}\"}} {n}", st.label());
            }
        }
    }
    let name = "px_http_request_duration_seconds";
    let _ = writeln!(
        w,
        "# HELP {name} From the loop turn that takes a request up to its response queued, by route and status class.\n# TYPE {name} histogram"
    );
    for (route, class, h) in latency_by_route(views, &about.routes) {
        let labels = format!("route=\"{}\",class=\"{class}\"", escape_label(&route));
        write_hist(w, name, &labels, &h);
    }
    let mut rtt = Histogram::default();
    let mut any = false;
    for s in views.iter().filter_map(|v| v.report.as_deref()?.stack.as_ref()) {
        rtt.merge(&s.rtt_at_close);
        any = true;
    }
    if any {
        let name = "px_tcp_srtt_at_close_seconds";
        let _ =
            writeln!(w, "# HELP {name} Smoothed RTT of each TCP connection when it ended.\n# TYPE {name} histogram");
        write_hist(w, name, "", &rtt);
    }
    out
}

fn write_hist(w: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cum = 0u64;
    for (i, bound) in BUCKET_BOUNDS_US.iter().enumerate() {
        cum += h.counts[i];
        let le = *bound as f64 / 1e6;
        let _ = writeln!(w, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
    }
    cum += h.counts[BUCKET_BOUNDS_US.len()];
    let _ = writeln!(w, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(w, "{name}_sum{braces} {}", h.sum_ns as f64 / 1e9);
    let _ = writeln!(w, "{name}_count{braces} {cum}");
}

/// HELP text: backslash and newline escaped (text format 0.0.4).
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslash, double quote and newline escaped.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_written_cumulatively_with_sum_and_count() {
        let mut h = Histogram::default();
        h.record(std::time::Duration::from_micros(20));
        h.record(std::time::Duration::from_micros(20));
        h.record(std::time::Duration::from_secs(20));
        let mut s = String::new();
        write_hist(&mut s, "x_seconds", "route=\"/a\"", &h);
        assert!(s.contains("x_seconds_bucket{route=\"/a\",le=\"0.00001\"} 0\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{route=\"/a\",le=\"0.000025\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{route=\"/a\",le=\"10\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_seconds_sum{route=\"/a\"} 20.00004\n"), "{s}");
        assert!(s.contains("x_seconds_count{route=\"/a\"} 3\n"), "{s}");
    }

    #[test]
    fn every_counter_of_a_stack_report_is_a_figure_with_help() {
        let r = CoreReport { stack: Some(Default::default()), ..Default::default() };
        let figs = figures(&LoopSnapshot::default(), &r);
        let names: Vec<&str> = figs.iter().map(|f| f.name.as_str()).collect();
        for want in
            ["tcp_reset", "tcp_syn_cookies_sent", "rx_packets", "drop_bad_checksum", "tasks_spawned", "http_2xx"]
        {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a figure name is used twice");
        assert!(figs.iter().all(|f| !f.help.is_empty() && !f.help.starts_with(' ')));
    }
}
