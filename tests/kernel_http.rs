//! The kernel backend end to end: routes, headers, transfers, the handler API features,
//! panics, bad config, and graceful shutdown.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{get, pattern, request, Raw, Server, BIN};

#[test]
fn tfb_routes_follow_the_rules() {
    let srv = Server::start(&["--queues", "2"]);
    let p = get(srv.addr, "/plaintext");
    assert_eq!((p.status, p.body.as_slice()), (200, &b"Hello, World!"[..]));
    assert_eq!(p.header("Content-Type"), Some("text/plain"));
    let j = get(srv.addr, "/json");
    assert_eq!(j.header("Content-Type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
    assert_eq!(v, serde_json::json!({"message": "Hello, World!"}));
    for r in [&p, &j] {
        assert_eq!(r.header("Server"), Some("px-appliance"));
        assert_eq!(r.header("Content-Length").unwrap(), r.body.len().to_string());
        httpdate::parse_http_date(r.header("Date").unwrap()).expect("IMF-fixdate");
    }
    let h = request(srv.addr, b"HEAD /json HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((h.status, h.header("Content-Length")), (200, Some("27")));
    srv.stop();
}

#[test]
fn date_changes_from_one_second_to_the_next() {
    let srv = Server::start(&[]);
    let mut c = Raw::connect(srv.addr);
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let first = c.read_response(false).header("Date").unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut later = first.clone();
    while later == first && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        later = c.read_response(false).header("Date").unwrap().to_string();
    }
    let (a, b) = (httpdate::parse_http_date(&first).unwrap(), httpdate::parse_http_date(&later).unwrap());
    assert!(b > a, "Date moved on: {first} -> {later}");
    srv.stop();
}

#[test]
fn bytes_route_transfers_byte_exact() {
    let srv = Server::start(&[]);
    for n in [0usize, 1, 251, 65_537, 1 << 20, 16 << 20] {
        let r = get(srv.addr, &format!("/bytes/{n}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
        assert!(r.body == pattern(n), "/bytes/{n} content");
    }
    assert_eq!(get(srv.addr, "/bytes/67108865").status, 400);
    assert_eq!(get(srv.addr, "/bytes/x").status, 400);
    // A slow reader of 64 MiB: the server queues and resumes, never drops.
    let mut c = Raw::connect(srv.addr);
    c.send(b"GET /bytes/67108864 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(false);
    assert!(r.body == pattern(64 << 20));
    srv.stop();
}

#[test]
fn handler_api_features() {
    let srv = Server::start(&["--apps", "tfb,demo", "--queues", "2"]);
    assert_eq!(get(srv.addr, "/demo/hello/Caf%C3%A9").body, "Hello, Café!\n".as_bytes());
    assert_eq!(get(srv.addr, "/demo/greeting?name=Ada+L").body, b"Greetings, Ada L.\n");
    let mut c = Raw::connect(srv.addr);
    for i in 1..=3 {
        c.send(b"GET /demo/visits HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response(false).body, format!("visit {i} on this connection\n").as_bytes());
    }
    let counts: Vec<u64> = (0..4)
        .map(|_| {
            let v: serde_json::Value = serde_json::from_slice(&get(srv.addr, "/demo/counter").body).unwrap();
            v["count"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(counts, [1, 2, 3, 4], "one control thread serialises the counter across cores");
    let chunked = request(
        srv.addr,
        b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.body, b"abcde");
    // Arena bodies go out by reference (writev of head + arena bytes), pipelined too.
    let mut c = Raw::connect(srv.addr);
    c.send(b"GET /demo/pattern/3000000 HTTP/1.1\r\nHost: t\r\n\r\nGET /demo/pattern/70 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.read_response(false).body == pattern(3_000_000));
    assert!(c.read_response(false).body == pattern(70));
    srv.stop();
}

#[test]
fn arena_exhaustion_is_503_for_that_connection_only() {
    let srv = Server::start(&["--apps", "tfb,demo"]);
    let mut hog = Raw::connect(srv.addr);
    hog.send(b"GET /demo/alloc/8388608 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = hog.read_response(false);
    assert_eq!((r.status, r.header("Connection")), (503, Some("close")));
    assert!(hog.closed_by_server());
    let ok = get(srv.addr, "/demo/alloc/100000");
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    srv.stop();
}

#[test]
fn panicking_handler_answers_500_and_the_core_goes_on() {
    let srv = Server::start(&["--apps", "tfb,demo", "--queues", "1"]);
    let mut c = Raw::connect(srv.addr);
    c.send(b"GET /demo/panic HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!(r.status, 500);
    assert!(c.closed_by_server());
    for _ in 0..3 {
        assert_eq!(get(srv.addr, "/plaintext").status, 200, "the same (only) core still serves");
    }
    srv.stop();
}

#[test]
fn graceful_shutdown_finishes_in_flight_responses() {
    let mut srv = Server::start(&["--queues", "2"]);
    let mut c = Raw::connect(srv.addr);
    c.send(b"GET /bytes/33554432 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut first = [0u8; 4096];
    let n = c.sock.read(&mut first).unwrap();
    assert!(n > 0, "response started");
    let idle = Raw::connect(srv.addr);
    srv.signal("TERM");
    // New connections are refused once the listeners are closed.
    let deadline = Instant::now() + Duration::from_secs(3);
    while std::net::TcpStream::connect(srv.addr).is_ok() {
        assert!(Instant::now() < deadline, "listener still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = Vec::new();
    c.sock.read_to_end(&mut rest).unwrap();
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(all[head_end..] == pattern(32 << 20), "the in-flight 32 MiB arrived whole");
    let mut idle = idle;
    assert!(idle.closed_by_server(), "idle keep-alive connection closed");
    let st = srv.wait(Duration::from_secs(5)).expect("exited within 5 s");
    assert!(st.success(), "{st}");
}

#[test]
fn bad_config_names_the_key_and_exits_nonzero() {
    let dir = std::env::temp_dir().join(format!("px-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, key) in [
        ("[http]\nmax_uri_byts = 1\n", "max_uri_byts"),
        ("[arena]\nchunk_bytes = 1000\n", "arena.chunk_bytes"),
        ("[server]\nqueues = -1\n", "queues"),
    ] {
        let f = dir.join("bad.toml");
        std::fs::write(&f, text).unwrap();
        let out = Command::new(BIN).args(["--config", f.to_str().unwrap()]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "stderr names {key}: {err}");
    }
    let out = Command::new(BIN).args(["--apps", "tfb,nope", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown app `nope`"));
    let out = Command::new(BIN).args(["--listen", "256.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn default_toml_lists_every_key_at_its_default() {
    let print = |args: &[&str]| -> String {
        let out = Command::new(BIN).args(args).arg("--print-config").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let defaults = print(&[]);
    let file = common::root().join("nic-config/default.toml");
    assert_eq!(print(&["--config", file.to_str().unwrap()]), defaults, "default.toml sets every key to its default");
    // Every key the configuration has (as printed) is written in the file, uncommented.
    let text = std::fs::read_to_string(&file).unwrap();
    let written: Vec<(String, String)> = {
        let mut section = String::new();
        let mut v = Vec::new();
        for line in text.lines().map(|l| l.split('#').next().unwrap().trim()) {
            if line.starts_with('[') {
                section = line.to_string();
            } else if let Some((k, _)) = line.split_once('=') {
                v.push((section.clone(), k.trim().to_string()));
            }
        }
        v
    };
    let mut section = String::new();
    for line in defaults.lines() {
        if line.starts_with('[') {
            section = line.to_string();
        } else if let Some((k, _)) = line.split_once('=') {
            let key = (section.clone(), k.trim().to_string());
            assert!(written.contains(&key), "nic-config/default.toml lacks {} {}", key.0, key.1);
        }
    }
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--backend", "--listen", "--queues", "--config", "--apps", "--cores", "--iface", "--ip", "--log-level"]
    {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

#[test]
fn ipv6_loopback_and_a_dual_stack_listener() {
    let srv = Server::start(&["--listen", "[::1]:0"]);
    assert!(srv.addr.is_ipv6(), "{}", srv.addr);
    let r = get(srv.addr, "/plaintext");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, World!"[..]));
    drop(srv);
    // [::]:PORT takes both families (IPV6_V6ONLY off).
    let srv = Server::start(&["--listen", "[::]:0"]);
    let port = srv.addr.port();
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let r = get(addr.parse().unwrap(), "/json");
        assert_eq!((r.status, r.body.as_slice()), (200, &br#"{"message":"Hello, World!"}"#[..]), "{addr}");
    }
}

#[test]
fn healthz_says_serving_then_draining_while_a_slow_request_finishes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut srv = Server::start(&["--apps", "tfb,demo", "--admin", &admin.to_string()]);
    let r = get(admin, "/healthz");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"serving\n"[..]));
    // A request in flight keeps the appliance draining after SIGTERM.
    let mut slow = Raw::connect(srv.addr);
    slow.send(b"GET /demo/sleep/1500 HTTP/1.1\r\nHost: x\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    let requests = || -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&get(admin, "/stats").body).unwrap();
        v["queues"].as_array().unwrap().iter().map(|q| q["requests"].as_u64().unwrap()).sum()
    };
    while requests() == 0 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    srv.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(admin, "/healthz");
        if r.status == 503 {
            assert_eq!(r.body, b"draining\n");
            break;
        }
        assert_eq!(r.status, 200);
        assert!(Instant::now() < deadline, "/healthz never said draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The request in flight is still answered.
    assert_eq!(slow.read_response(false).status, 200);
    let st = srv.wait(Duration::from_secs(10)).expect("exited after the drain");
    assert!(st.success(), "exit status {st}");
}

#[test]
fn a_second_appliance_on_a_served_address_fails_with_one_line() {
    let srv = Server::start(&["--queues", "2"]);
    let out = Command::new(BIN).args(["--listen", &srv.addr.to_string(), "--admin", ""]).output().unwrap();
    assert!(!out.status.success(), "the second appliance exited with an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process already serves it"), "stderr: {err}");
    assert_eq!(err.trim().lines().filter(|l| l.contains("error")).count(), 1, "one error line: {err}");
    // The first still has every connection.
    for _ in 0..20 {
        assert_eq!(get(srv.addr, "/plaintext").status, 200);
    }
    srv.stop();
}

#[test]
fn admin_stats_count_each_queues_requests_and_stay_off_the_data_port() {
    // A free port for the admin listener (bound, read, released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let srv = Server::start(&["--queues", "2", "--admin", &admin.to_string()]);
    // Bound before the readiness line is printed.
    let stats = || -> serde_json::Value {
        let r = get(admin, "/stats");
        assert_eq!((r.status, r.header("Content-Type")), (200, Some("application/json")));
        serde_json::from_slice(&r.body).unwrap()
    };
    let total = |v: &serde_json::Value, f: &dyn Fn(&serde_json::Value) -> u64| -> u64 {
        v["queues"].as_array().unwrap().iter().map(f).sum()
    };
    let before = stats();
    assert_eq!(before["backend"], "kernel");
    assert_eq!(before["queues"].as_array().unwrap().len(), 2);
    for _ in 0..20 {
        assert_eq!(get(srv.addr, "/plaintext").status, 200);
    }
    // The data port does not serve the admin routes.
    assert_eq!(get(srv.addr, "/stats").status, 404);
    // Published once per turn: the core may still be in the turn that answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let v = stats();
        if total(&v, &|q| q["requests"].as_u64().unwrap()) >= total(&before, &|q| q["requests"].as_u64().unwrap()) + 21
        {
            break v;
        }
        assert!(Instant::now() < deadline, "requests not counted: {v}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let busy = |v: &serde_json::Value| total(v, &|q| q["loop"]["busy_ns"].as_u64().unwrap());
    assert!(busy(&after) > busy(&before), "busy time grew: {before} → {after}");
    assert_eq!(get(admin, "/nope").status, 404);
    srv.stop();
}

/// Sums the samples of `name` whose labels contain every one of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want))).then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

#[test]
fn admin_metrics_give_every_counter_latency_by_route_and_the_process() {
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    let srv = Server::start(&["--queues", "2", "--apps", "tfb,demo", "--admin", &admin.to_string()]);
    let mut c = Raw::connect(srv.addr);
    for (path, times, status) in
        [("/plaintext", 30, 200), ("/json", 10, 200), ("/no/such/page", 5, 404), ("/demo/sleep/20", 3, 200)]
    {
        for _ in 0..times {
            c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            assert_eq!(c.read_response(false).status, status, "{path}");
        }
    }
    // Every response was read before the scrape, and a scrape takes fresh reports.
    let m = get(admin, "/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(m.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = String::from_utf8(m.body).unwrap();
    // Well formed: every sample's metric has HELP and TYPE lines before it, every value
    // is a number.
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split_once(' ').unwrap().0.to_string());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {line:?}"));
            value.parse::<f64>().unwrap_or_else(|_| panic!("value of {line:?}"));
            let name = series.split('{').next().unwrap();
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            assert!(typed.contains(name) || typed.contains(base), "no TYPE before {line:?}");
            assert!(helped.contains(name) || helped.contains(base), "no HELP before {line:?}");
        }
    }
    let dur = "px_http_request_duration_seconds_count";
    assert_eq!(metric_sum(&text, dur, &["route=\"/plaintext\"", "class=\"2xx\""]), 30.0, "{text}");
    assert_eq!(metric_sum(&text, dur, &["route=\"/json\"", "class=\"2xx\""]), 10.0);
    assert_eq!(metric_sum(&text, dur, &["route=\"(none)\"", "class=\"4xx\""]), 5.0);
    assert_eq!(metric_sum(&text, dur, &["route=\"/demo/sleep/{ms}\"", "class=\"2xx\""]), 3.0);
    // The async handler slept 20 ms each time: the sum says so, and no bucket at or
    // below 10 ms holds it.
    let slept = metric_sum(&text, "px_http_request_duration_seconds_sum", &["route=\"/demo/sleep/{ms}\""]);
    assert!((0.06..5.0).contains(&slept), "sum {slept}");
    let fast = "px_http_request_duration_seconds_bucket";
    assert_eq!(metric_sum(&text, fast, &["route=\"/demo/sleep/{ms}\"", "le=\"0.01\""]), 0.0);
    assert_eq!(metric_sum(&text, fast, &["route=\"/demo/sleep/{ms}\"", "le=\"+Inf\""]), 3.0);
    // Counters with a queue label, summed over both queues.
    assert_eq!(metric_sum(&text, "px_http_requests_total", &[]), 48.0);
    assert_eq!(metric_sum(&text, "px_http_4xx_total", &[]), 5.0);
    assert_eq!(metric_sum(&text, "px_tasks_completed_total", &[]), 3.0);
    assert_eq!(
        metric_sum(&text, "px_http_requests_total", &["queue=\"0\""])
            + metric_sum(&text, "px_http_requests_total", &["queue=\"1\""]),
        48.0
    );
    assert!(metric_sum(&text, "px_process_resident_bytes", &[]) > 1e6);
    assert_eq!(metric_sum(&text, "px_build_info", &["backend=\"kernel\""]), 1.0);
    // /stats: build, configuration in force (no password), process memory, per queue
    // counters, gauges and latency from a fresh report.
    let v: serde_json::Value = serde_json::from_slice(&get(admin, "/stats").body).unwrap();
    assert!(!v["build"]["commit"].as_str().unwrap().is_empty());
    assert_eq!(v["config"]["server"]["queues"], 2);
    assert_eq!(v["config"]["db"]["password"], "(not shown)");
    assert!(v["process"]["resident_bytes"].as_u64().unwrap() > 1_000_000);
    let queues = v["queues"].as_array().unwrap();
    assert!(queues.iter().all(|q| q["report_fresh"] == true), "{v}");
    let sum = |f: &dyn Fn(&serde_json::Value) -> u64| queues.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|q| q["counters"]["http_requests"].as_u64().unwrap()), 48);
    assert_eq!(sum(&|q| q["latency"]["count"].as_u64().unwrap()), 48);
    assert!(queues.iter().all(|q| q["gauges"]["arena_chunks_total"].as_u64().unwrap() > 0));
    // The one client connection is still open: one HTTP connection on the kernel backend.
    assert_eq!(sum(&|q| q["kernel_conns"]["http"].as_u64().unwrap()), 1, "{v}");
    let plain = v["latency"].as_array().unwrap().iter().find(|r| r["route"] == "/plaintext").unwrap();
    assert_eq!(plain["count"], 30);
    assert!(plain["p99_us"].as_f64().unwrap() > 0.0);
    srv.stop();
}

#[test]
fn top_shows_each_queue_of_a_running_appliance_under_load() {
    let admin = format!("127.0.0.1:{}", common::free_port());
    let srv = Server::start(&["--queues", "2", "--admin", &admin]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), srv.addr);
        std::thread::spawn(move || {
            let mut c = Raw::connect(addr);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.send(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(c.read_response(false).status, 200);
                n += 1;
            }
            n
        })
    };
    let out = Command::new(BIN)
        .args(["top", "--admin", &admin, "--interval-ms", "400", "--iterations", "2"])
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = load.join().unwrap();
    assert!(out.status.success(), "top failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("px-appliance 0.1.0").count(), 2, "two frames: {text}");
    assert!(text.contains("kernel backend"), "{text}");
    for q in ["0", "1", "all"] {
        assert_eq!(text.lines().filter(|l| l.split_whitespace().next() == Some(q)).count(), 2, "{q}: {text}");
    }
    // The load ran through both frames: the total request rate is not zero, and the
    // p99 column has a value.
    let alls: Vec<Vec<&str>> =
        text.lines().filter(|l| l.starts_with("  all")).map(|l| l.split_whitespace().collect()).collect();
    assert!(alls.iter().all(|w| w[1] != "0" && w[8] != "-"), "sent {sent}: {text}");
    // A wrong address is one clear error.
    let bad = Command::new(BIN).args(["top", "--admin", "127.0.0.1:1", "--iterations", "1"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot reach the admin listener"));
    srv.stop();
}

#[test]
fn logs_are_one_json_object_per_line_on_request() {
    let srv = Server::start_logged(&[], &["--log-format", "json", "--admin", ""]);
    assert_eq!(get(srv.addr, "/plaintext").status, 200);
    let log = srv.stop_log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "serving, signal, the queue's report: {log}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(), "{line}");
    }
    let messages: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(messages.iter().any(|m| m.starts_with("serving http://")), "{log}");
    assert!(messages.iter().any(|m| m.contains("http_2xx=1")), "{log}");
    // A bad value names the key.
    let out = Command::new(BIN).args(["--log-format", "xml"]).output().unwrap();
    assert!(!out.status.success());
    let f = common::temp_file("bad-log.toml", "[log]\nformat = \"xml\"\n");
    let out = Command::new(BIN).args(["--config", f.to_str().unwrap(), "--print-config"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("format"), "{err}");
}

#[test]
fn check_on_the_kernel_backend_fails_for_a_taken_address_and_a_missing_cpu() {
    let srv = Server::start(&[]);
    let out =
        Command::new(BIN).args(["check", "--backend", "kernel", "--listen", &srv.addr.to_string()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.lines().any(|l| l.starts_with("FAIL server.listen") && l.contains("cannot be bound")), "{text}");
    let out = Command::new(BIN).args(["check", "--listen", "127.0.0.1:0", "--cores", "4096"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("FAIL server.cores names CPU 4096"), "{text}");
    let out = Command::new(BIN).args(["check", "--listen", "127.0.0.1:0", "--quiet"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("OK")), "--quiet leaves out the OK lines: {text}");
    assert!(text.contains("px-appliance check: "), "{text}");
    srv.stop();
}
