//! Async handlers and outbound connections on the kernel-socket transport: thousands of
//! timers waiting on one core while other requests are served, an upstream relayed
//! byte-exact, an upstream down (502) or silent (504), and a client that goes away
//! (its task is cancelled).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{counter, get, root, temp_file, Nginx, Raw, Server};

fn conn_scale(port: u16, n: usize, path: &str, body_file: Option<&std::path::Path>) -> serde_json::Value {
    let script = root().join("scripts/conn-scale.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(["127.0.0.1", &port.to_string(), &n.to_string(), path]);
    if let Some(f) = body_file {
        cmd.arg(f);
    }
    let out = cmd.output().expect("python3 runs conn-scale.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "conn-scale.py: {text} {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn config(name: &str, text: &str) -> String {
    temp_file(name, text).to_str().unwrap().to_string()
}

#[test]
fn ten_thousand_sleeps_wait_on_one_core_while_plaintext_is_served() {
    let server = Server::start_logged(&["prlimit", "--nofile=16384"], &["--apps", "tfb,demo", "--queues", "1"]);
    let started = Instant::now();
    let r = get(server.addr, "/demo/sleep/50");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"slept 50 ms\n"[..]));
    assert!(started.elapsed() >= Duration::from_millis(50), "it waited");

    // Plaintext on its own connection, all the while.
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, s) = (server.addr, stop.clone());
    let prober = std::thread::spawn(move || {
        let mut raw = Raw::connect(addr);
        let mut lat = Vec::new();
        while !s.load(Ordering::Relaxed) {
            let t = Instant::now();
            raw.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(raw.read_response(false).status, 200);
            lat.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        lat
    });
    let expected = temp_file("slept-1000", "slept 1000 ms\n");
    let res = conn_scale(server.addr.port(), 10_000, "/demo/sleep/1000", Some(&expected));
    stop.store(true, Ordering::Relaxed);
    let mut lat = prober.join().unwrap();
    assert_eq!(res["answered"], 10_000, "{res}");
    assert_eq!(res["errors"], 0, "{res}");
    let secs = res["request_seconds"].as_f64().unwrap();
    // One at a time they would take 10,000 s: they waited together.
    assert!(secs < 60.0, "{res}");
    assert!(lat.len() >= 10, "plaintext was answered while the sleeps waited ({} answers)", lat.len());
    lat.sort();
    eprintln!(
        "10,000 × /demo/sleep/1000 answered in {secs} s; plaintext meanwhile: {} requests, p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    );
    let log = server.stop_log();
    assert!(counter(&log, "tasks_completed") >= 10_001, "{log}");
    assert_eq!(counter(&log, "tasks_cancelled"), 0, "{log}");
}

#[test]
fn a_sleep_past_the_deadline_is_504_and_a_busy_core_is_503() {
    let cfg = config("deadline.toml", "[handlers]\ndeadline_ms = 200\n");
    let server = Server::start_logged(&[], &["--apps", "demo", "--queues", "1", "--config", &cfg]);
    let r = get(server.addr, "/demo/sleep/5000");
    assert_eq!(r.status, 504, "{:?}", String::from_utf8_lossy(&r.body));
    // Two in flight fill the core; a third is refused at once. Until both have reached
    // the core, short sleeps still get in (and are answered): ask until one is refused.
    let cfg = config("busy.toml", "[handlers]\nmax_in_flight_per_core = 2\n");
    let server2 = Server::start_logged(&[], &["--apps", "demo", "--queues", "1", "--config", &cfg]);
    let mut a = Raw::connect(server2.addr);
    let mut b = Raw::connect(server2.addr);
    a.send(b"GET /demo/sleep/3000 HTTP/1.1\r\nHost: t\r\n\r\n");
    b.send(b"GET /demo/sleep/3000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let refused = (0..200).map(|_| get(server2.addr, "/demo/sleep/1")).find(|r| r.status != 200);
    let c = refused.expect("a third request is refused while two are in flight");
    assert_eq!(c.status, 503);
    assert_eq!(c.header("Retry-After"), Some("1"));
    assert_eq!(a.read_response(false).status, 200);
    assert_eq!(b.read_response(false).status, 200);
    let log = server.stop_log();
    assert_eq!(counter(&log, "tasks_timed_out"), 1, "{log}");
    let log = server2.stop_log();
    assert_eq!(counter(&log, "tasks_refused_busy"), 1, "{log}");
}

#[test]
fn a_client_that_goes_away_cancels_its_task() {
    let server = Server::start_logged(&[], &["--apps", "demo", "--queues", "1"]);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /demo/sleep/3000 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    drop(s); // the request arrives before the FIN: the task starts, then is cancelled
             // The core still serves, and nothing of the cancelled task answers anyone.
    assert_eq!(get(server.addr, "/demo/sleep/1").status, 200);
    let log = server.stop_log();
    assert_eq!(counter(&log, "tasks_cancelled"), 1, "{log}");
    assert_eq!(counter(&log, "tasks_completed"), 1, "{log}");
}

#[test]
fn upstream_relayed_byte_exact_1000_at_once_and_its_failures_are_fast_and_typed() {
    let dir = root().join("target/test-tmp").join(format!("upstream-{}", std::process::id()));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(www.join("blob"), &blob).unwrap();
    let Some(nginx) = Nginx::start(&www) else { return };
    let cfg = config("upstream.toml", &format!("[demo]\nupstream = \"{}\"\n", nginx.addr));
    let server =
        Server::start_logged(&["prlimit", "--nofile=16384"], &["--apps", "demo", "--queues", "2", "--config", &cfg]);
    let r = get(server.addr, "/demo/upstream/blob");
    assert_eq!(r.status, 200);
    assert!(r.body == blob, "byte-exact");
    assert_eq!(get(server.addr, "/demo/upstream/missing").status, 404, "the upstream's status is relayed");
    let res = conn_scale(server.addr.port(), 1000, "/demo/upstream/blob", Some(&www.join("blob")));
    assert_eq!((res["answered"].as_u64(), res["errors"].as_u64()), (Some(1000), Some(0)), "{res}");
    eprintln!("1,000 concurrent upstream fetches of 200 kB: {res}");
    let log = server.stop_log();
    assert!(counter(&log, "upstream_established") >= 1002, "{log}");

    // Upstream down: nothing listens on its port.
    drop(nginx);
    let cfg = config("down.toml", &format!("[demo]\nupstream = \"127.0.0.1:{}\"\n", common::free_port()));
    let server = Server::start_logged(&[], &["--apps", "demo", "--queues", "1", "--config", &cfg]);
    let t = Instant::now();
    let r = get(server.addr, "/demo/upstream/x");
    let took = t.elapsed();
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("refused"), "{}", String::from_utf8_lossy(&r.body));
    eprintln!("upstream down: 502 in {took:?}");
    assert_eq!(counter(&server.stop_log(), "upstream_refused"), 1);

    // Upstream silent: it accepts and never answers; the request's deadline answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let (mut s, _) = silent.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf); // the request; then silence until the peer closes
        let _ = s.read(&mut buf);
    });
    let cfg = config("silent.toml", &format!("[demo]\nupstream = \"{silent_addr}\"\n[handlers]\ndeadline_ms = 400\n"));
    let server = Server::start_logged(&[], &["--apps", "demo", "--queues", "1", "--config", &cfg]);
    let t = Instant::now();
    let r = get(server.addr, "/demo/upstream/x");
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert!(took >= Duration::from_millis(400), "not before the deadline: {took:?}");
    eprintln!("upstream silent: 504 after {took:?} (deadline 400 ms)");
    holder.join().unwrap(); // the appliance closed the upstream connection when the task ended
    let log = server.stop_log();
    assert_eq!(counter(&log, "tasks_timed_out"), 1, "{log}");
}
