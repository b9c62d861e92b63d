//! Real clients against the kernel backend: curl, Python's http.client, ab -k (HTTP/1.0
//! keep-alive) and wrk (256 connections, 5 s).

mod common;

use std::process::Command;

use common::{pattern, tool, Server};

#[test]
fn curl_gets_every_route() {
    let Some(curl) = tool("curl") else { return };
    let srv = Server::start(&["--apps", "tfb,bytes,demo"]);
    let run = |args: &[&str]| {
        let out = Command::new(&curl).args(["-sS", "--max-time", "20"]).args(args).output().unwrap();
        assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    assert_eq!(run(&[&srv.url("/plaintext")]), b"Hello, World!");
    assert_eq!(run(&[&srv.url("/json")]), br#"{"message":"Hello, World!"}"#);
    assert!(run(&[&srv.url("/bytes/3000000")]) == pattern(3_000_000));
    let head = String::from_utf8(run(&["-I", &srv.url("/json")])).unwrap();
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("Content-Length: 27"), "{head}");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let f = std::env::temp_dir().join(format!("px-curl-{}", std::process::id()));
    std::fs::write(&f, &big).unwrap();
    // curl sends Expect: 100-continue for a body this size.
    let echoed = run(&["--data-binary", &format!("@{}", f.display()), &srv.url("/demo/echo")]);
    assert!(echoed == big);
    let chunked = run(&["-H", "Transfer-Encoding: chunked", "--data-binary", "@-", &srv.url("/demo/echo")]);
    assert_eq!(chunked, b"");
    // Two URLs on one curl command reuse the connection (keep-alive).
    let both = String::from_utf8(run(&["-v", &srv.url("/demo/visits"), &srv.url("/demo/visits")])).unwrap();
    assert!(both.contains("visit 2 on this connection"), "{both}");
    srv.stop();
}

#[test]
fn python_http_client_keep_alive_and_chunked() {
    let Some(py) = tool("python3") else { return };
    let srv = Server::start(&["--apps", "tfb,demo"]);
    let script = r#"
import http.client, json, sys
host, port = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection(host, port, timeout=10)
for i in range(1, 101):
    c.request("GET", "/demo/visits")
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, r.status
    assert body == f"visit {i} on this connection\n".encode(), body
c.request("GET", "/json")
r = c.getresponse()
assert json.loads(r.read()) == {"message": "Hello, World!"}
assert r.getheader("Server") == "px-appliance"
def gen():
    yield b"hello "
    yield b"chunked "
    yield b"world"
c.request("POST", "/demo/echo", body=gen(), encode_chunked=True)
r = c.getresponse()
assert r.read() == b"hello chunked world"
c.request("HEAD", "/plaintext")
r = c.getresponse()
assert r.getheader("Content-Length") == "13" and r.read() == b""
c.request("GET", "/missing")
r = c.getresponse(); r.read()
assert r.status == 404
c.request("GET", "/demo/visits")
r = c.getresponse()
assert r.read() == b"visit 101 on this connection\n", "still the same connection after a 404"
print("ok")
"#;
    let out = Command::new(py)
        .args(["-c", script, &srv.addr.ip().to_string(), &srv.addr.port().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    srv.stop();
}

fn field<'a>(report: &'a str, name: &str) -> &'a str {
    report.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_else(|| panic!("{name} in {report}"))
}

#[test]
fn apache_bench_http10_keep_alive() {
    let Some(ab) = tool("ab") else { return };
    let srv = Server::start(&["--queues", "2"]);
    for (path, extra) in [("/plaintext", &["-k"][..]), ("/json", &["-k"][..]), ("/plaintext", &[][..])] {
        let out = Command::new(&ab)
            .args(["-q", "-n", "5000", "-c", "16", "-s", "10"])
            .args(extra)
            .arg(srv.url(path))
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "ab: {report}{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(field(&report, "Complete requests:"), "5000", "{report}");
        assert_eq!(field(&report, "Failed requests:"), "0", "{report}");
        if extra.contains(&"-k") {
            assert_eq!(field(&report, "Keep-Alive requests:"), "5000", "HTTP/1.0 keep-alive honoured: {report}");
        }
        assert!(!report.contains("Non-2xx"), "{report}");
    }
    srv.stop();
}

#[test]
fn wrk_256_connections_5s_no_errors() {
    let Some(wrk) = tool("wrk") else { return };
    let srv = Server::start(&["--queues", "2"]);
    for path in ["/plaintext", "/json"] {
        let out = Command::new(&wrk)
            .args(["-t", "2", "-c", "256", "-d", "5s", "--timeout", "5s"])
            .arg(srv.url(path))
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{report}");
        assert!(!report.contains("Socket errors"), "{report}");
        assert!(!report.contains("Non-2xx"), "{report}");
        let reqs: u64 = report
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(reqs > 1000, "wrk made progress: {report}");
        eprintln!("wrk {path}: {}", report.lines().find(|l| l.starts_with("Requests/sec")).unwrap_or(""));
    }
    srv.stop();
}
