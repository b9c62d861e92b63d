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
    loop {
        let mut c = Raw::connect(srv.addr);
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        if c.read_response(false).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "server did not recover");
    }
    srv.stop();
}
