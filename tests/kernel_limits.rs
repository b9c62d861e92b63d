//! Raw-socket suite over the kernel backend: each limit and protocol error gets its
//! status, and the connection is closed or stays usable as it should.

mod common;

use common::{Raw, Server};

fn check(srv: &Server, req: &[u8], want: u16, closes: bool) {
    let mut c = Raw::connect(srv.addr);
    c.send(req);
    let r = c.read_response(false);
    let shown = String::from_utf8_lossy(&req[..req.len().min(60)]).into_owned();
    assert_eq!(r.status, want, "{shown}");
    assert!(r.header("Date").is_some() && r.header("Server").is_some());
    if closes {
        assert_eq!(r.header("Connection"), Some("close"), "{shown}");
        assert!(c.closed_by_server(), "server closes after {want}");
    } else {
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        let next = c.read_response(false);
        assert_eq!((next.status, next.body.as_slice()), (200, &b"Hello, World!"[..]), "usable after {want}");
    }
}

#[test]
fn every_limit_and_error_over_real_sockets() {
    let srv = Server::start(&["--apps", "tfb,bytes,demo"]);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "u".repeat(9000));
    check(&srv, long_uri.as_bytes(), 414, true);
    let long_line = format!("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "h".repeat(9000));
    check(&srv, long_line.as_bytes(), 431, true);
    let block: String = (0..800).map(|i| format!("X-F{i}: {}\r\n", "v".repeat(16))).collect();
    check(&srv, format!("GET /plaintext HTTP/1.1\r\nHost: t\r\n{block}\r\n").as_bytes(), 431, true);
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    check(&srv, format!("GET /plaintext HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(), 431, true);
    check(&srv, b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n", 413, true);
    let big_chunk =
        format!("POST /demo/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n", 2 << 20);
    check(&srv, big_chunk.as_bytes(), 413, true);
    check(
        &srv,
        b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        true,
    );
    check(
        &srv,
        b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        true,
    );
    check(&srv, b"GET /plaintext HTTP/1.1\nHost: t\n\n", 400, true);
    check(&srv, b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Bad: a\x7fb\r\n\r\n", 400, true);
    check(&srv, b"GET /plaintext HTTP/2.0\r\nHost: t\r\n\r\n", 505, true);
    check(&srv, b"FROB /plaintext HTTP/1.1\r\nHost: t\r\n\r\n", 501, false);
    check(&srv, b"GET /no/such/route HTTP/1.1\r\nHost: t\r\n\r\n", 404, false);
    let mut c = Raw::connect(srv.addr);
    c.send(b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    srv.stop();
}

#[test]
fn limits_follow_the_config_file() {
    let dir = std::env::temp_dir().join(format!("px-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("small.toml");
    std::fs::write(&cfg, "[http]\nmax_uri_bytes = 32\nmax_body_bytes = 8\nmax_headers = 4\n").unwrap();
    let srv = Server::start(&["--config", cfg.to_str().unwrap(), "--apps", "tfb,demo"]);
    check(&srv, b"GET /plaintext?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: t\r\n\r\n", 414, true);
    check(&srv, b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n123456789", 413, true);
    check(&srv, b"GET /plaintext HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431, true);
    check(&srv, b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n12345678", 200, false);
    srv.stop();
}

#[test]
fn out_of_descriptors_refuses_fast_and_recovers() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    // 48 descriptors: a few dozen connections fit, the rest must be refused at once
    // (closed) rather than left hanging in the accept queue.
    let srv = Server::start_under(&["prlimit", "--nofile=48:48"], &[]);
    let mut socks: Vec<std::net::TcpStream> =
        (0..80).map(|_| std::net::TcpStream::connect(srv.addr).unwrap()).collect();
    let started = Instant::now();
    let (mut answered, mut refused) = (0, 0);
    for s in &mut socks {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200") => answered += 1,
            Ok(0) => refused += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => refused += 1,
            other => panic!("connection neither answered nor refused: {other:?}"),
        }
    }
    assert!(answered >= 10 && refused >= 10, "answered {answered}, refused {refused}");
    assert!(started.elapsed() < Duration::from_secs(10), "nobody waited for a timeout");
    drop(socks);
    // Descriptors are back: the server answers again.
    let deadline = Instant::now() + Duration::from_secs(5);
    // Until the loop has seen those 80 closes, a new connection may still be refused
    // (closed at once, or reset): that is a retry, not a failure.
    loop {
        let mut s = std::net::TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200") => break,
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("neither answered nor refused after the descriptors came back: {other:?}"),
        }
        assert!(Instant::now() < deadline, "server did not recover");
        std::thread::sleep(Duration::from_millis(10));
    }
    srv.stop();
}

#[test]
fn rfc9112_edges_over_real_sockets() {
    let srv = Server::start_logged(&[], &["--apps", "tfb,bytes,demo"]);
    // §3.2: an invalid Host value is 400; framing is intact, the connection goes on.
    for host in ["a b", "a/b", "user@example.com", "<x>", "a:80x", "a:99999", "[::1"] {
        check(&srv, format!("GET /plaintext HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(), 400, false);
    }
    check(&srv, b"GET /plaintext HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200, false);
    // §3.2.4: OPTIONS * is answered, for the server as a whole.
    let r = common::request(srv.addr, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.header("Allow").is_some_and(|a| a.contains("GET")), "{:?}", r.headers);
    check(&srv, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n", 200, false);
    // RFC 9110 §2.5: HTTP/1.x is served as 1.1; a malformed version is 400, not 505.
    let r = common::request(srv.addr, b"GET /plaintext HTTP/1.3\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, World!"[..]));
    check(&srv, b"GET /plaintext HTTP/1.3\r\nHost: t\r\n\r\n", 200, false);
    check(&srv, b"GET /plaintext HTTP/1.10\r\nHost: t\r\n\r\n", 400, true);
    check(&srv, b"GET /plaintext HTTPS/1.1\r\nHost: t\r\n\r\n", 400, true);
    check(&srv, b"GET /plaintext HTTP/3.0\r\nHost: t\r\n\r\n", 505, true);
    // An error never echoes what the client sent.
    let method = "M".repeat(10_000);
    let r = common::request(srv.addr, format!("{method} /plaintext HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    assert_eq!(r.status, 501);
    assert!(r.body.len() < 100 && !String::from_utf8_lossy(&r.body).contains("MMM"), "{:?}", r.body);
    // Trailers: 100,000 lines are refused (431), a malformed one is 400.
    let mut many = b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n".to_vec();
    for i in 0..100_000 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    check(&srv, &many, 431, true);
    check(
        &srv,
        b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nno colon\r\n\r\n",
        400,
        true,
    );
    let log = srv.stop_log();
    assert!(common::counter(&log, "http_rejected_400") >= 9, "{log}");
    assert!(common::counter(&log, "http_rejected_431") >= 1, "{log}");
    assert!(common::counter(&log, "http_rejected_501") >= 1, "{log}");
}

#[test]
fn slow_clients_get_408_however_they_trickle() {
    use std::io::Read;
    use std::time::Duration;
    let cfg = common::temp_file("slow.toml", "[http]\nheader_timeout_ms = 500\nbody_timeout_ms = 800\n");
    let srv = Server::start_logged(&[], &["--config", cfg.to_str().unwrap(), "--apps", "tfb,demo"]);
    // A head, one byte every 50 ms: each byte restarted the old idle timer, and would
    // have kept the connection forever. The 408 comes while the head is still arriving.
    let head = format!("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: {}\r\n\r\n", "s".repeat(200));
    let mut c = Raw::connect(srv.addr);
    c.sock.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut sent = 0;
    while sent < head.len() {
        use std::io::Write;
        let _ = c.sock.write(&head.as_bytes()[sent..sent + 1]);
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
        let mut tmp = [0u8; 1024];
        if let Ok(n) = c.sock.read(&mut tmp) {
            got.extend_from_slice(&tmp[..n]);
            if n > 0 {
                break;
            }
        }
    }
    assert!(sent < head.len(), "the whole head trickled in without a timeout");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 ") && text.contains("Connection: close"), "{text}");
    // A body: 10 of 100 bytes, then nothing.
    let mut c = Raw::connect(srv.addr);
    c.send(b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789");
    let r = c.read_response(false);
    assert_eq!((r.status, r.header("Connection")), (408, Some("close")));
    assert!(c.closed_by_server());
    // A prompt client on the same server is not affected.
    let r = common::get(srv.addr, "/plaintext");
    assert_eq!(r.status, 200);
    let log = srv.stop_log();
    assert_eq!(common::counter(&log, "http_head_timeouts"), 1, "{log}");
    assert_eq!(common::counter(&log, "http_body_timeouts"), 1, "{log}");
    assert_eq!(common::counter(&log, "http_rejected_408"), 2, "{log}");
}

/// After an error that closes the connection, the server shuts its side and drains the
/// input for a while (RFC 9112 §9.6): a client still sending reads every byte of the
/// responses before it, not an RST that drops what the server had not sent yet.
#[test]
fn a_closing_error_behind_a_large_response_loses_nothing() {
    use std::io::{Read, Write};
    let srv = Server::start(&["--apps", "tfb,bytes"]);
    let n = 4 << 20;
    let mut c = Raw::connect(srv.addr);
    let mut input = format!("GET /bytes/{n} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes();
    input.extend_from_slice(b"GET /plaintext HTTP/1.1\nHost: t\n\n"); // bare LF: 400, close
    input.extend(std::iter::repeat_n(b'j', 256 << 10)); // and the client goes on sending
    let mut w = c.sock.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&input).is_ok());
    let big = c.read_response(false);
    assert_eq!(big.status, 200);
    assert_eq!(big.body, common::pattern(n), "the large response arrived whole");
    let bad = c.read_response(false);
    assert_eq!((bad.status, bad.header("Connection")), (400, Some("close")));
    let mut rest = [0u8; 1024];
    assert_eq!(c.sock.read(&mut rest).unwrap(), 0, "then an orderly end, no reset");
    assert!(writer.join().unwrap(), "the server read (and dropped) everything the client sent after");
    srv.stop();
}

#[test]
fn connection_caps_per_source_and_per_core_answer_503() {
    for (cfg_text, cap, key) in [
        ("[kernel]\nmax_connections_per_source = 3\n", 3, "conn_refused_per_source"),
        ("[kernel]\nmax_connections = 2\n", 2, "conn_refused_per_core"),
    ] {
        let cfg = common::temp_file(&format!("caps-{cap}.toml"), cfg_text);
        let srv = Server::start_logged(&[], &["--config", cfg.to_str().unwrap(), "--apps", "tfb"]);
        let mut held: Vec<Raw> = (0..cap)
            .map(|_| {
                let mut c = Raw::connect(srv.addr);
                c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(c.read_response(false).status, 200);
                c
            })
            .collect();
        // One more: 503 with Retry-After, then the close.
        let mut extra = Raw::connect(srv.addr);
        let r = extra.read_response(false);
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")), "{cfg_text}");
        assert!(extra.closed_by_server());
        // The held connections still serve; when one goes, a new one is let in.
        for c in &mut held {
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.read_response(false).status, 200);
        }
        let mut gone = held.pop().unwrap();
        gone.sock.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(gone.closed_by_server());
        let mut again = None;
        for _ in 0..100 {
            // The server sees the close on its next turn: retry until it has.
            let mut c = Raw::connect(srv.addr);
            c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
            let r = c.read_response(false);
            if r.status == 200 {
                again = Some(c);
                break;
            }
            assert_eq!(r.status, 503);
        }
        assert!(again.is_some(), "a connection let in once one closed");
        drop(held);
        let log = srv.stop_log();
        assert!(common::counter(&log, key) >= 1, "{log}");
    }
}
