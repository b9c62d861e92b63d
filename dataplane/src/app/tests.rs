//! Engine tests: bytes in, parsed responses out, no sockets.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::dispatch::{AppSet, Delivery, Dispatch, DispatchConfig, HttpSession};
use super::*;
use crate::http::{Body, BodySource, HttpConn, HttpLimits, Method, OwnedResponse, Request, Response};
use crate::mem::{ChunkPool, HugepagePolicy, Region, HUGEPAGE_BYTES};

fn hello<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::ok("text/plain", b"Hello, World!").into())
}
fn echo<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let copy = cx.arena().alloc_slice(req.body())?;
    Ok(Response::ok("application/octet-stream", copy).into())
}
fn param<'a>(req: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::ok("text/plain", req.param("name").unwrap_or("").as_bytes()).into())
}
fn boom<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    panic!("boom")
}
fn hog<'a>(_: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    cx.arena().alloc_bytes(10 << 20)?;
    Ok(Response::ok("text/plain", b"unreachable").into())
}
fn deferred<'a>(_: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    cx.call_control(Box::new(|_: &mut ControlState| OwnedResponse::new(200, "text/plain", "from control")))
}
fn big<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    struct Ones;
    impl BodySource for Ones {
        fn fill(&mut self, out: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
            out.resize(out.len() + max, b'1');
            Ok(max)
        }
    }
    Ok(Response::new(200, "application/octet-stream", Body::Stream { len: 1 << 20, source: Box::new(Ones) }).into())
}

struct Harness {
    apps: Arc<AppSet>,
    plane: Option<ControlPlane>,
    d: Dispatch,
    limits: HttpLimits,
    built: HttpLimits,
    pool: Rc<ChunkPool>,
    now: SystemTime,
}

/// A connection under test: an HTTP session driven through the dispatcher.
struct TConn(HttpSession);

/// The dispatcher, lent for one call.
struct Env<'h>(&'h mut Dispatch);

impl std::ops::Deref for TConn {
    type Target = HttpConn;
    fn deref(&self) -> &HttpConn {
        &self.0.http
    }
}

impl TConn {
    fn receive(&mut self, data: &[u8], env: &mut Env<'_>) {
        env.0.received(1, &mut self.0, data);
    }
    fn consume(&mut self, n: usize, env: &mut Env<'_>) {
        env.0.consumed(1, &mut self.0, n);
    }
    fn complete_deferred(&mut self, resp: OwnedResponse, env: &mut Env<'_>) {
        env.0.deliver(1, &mut self.0, Delivery::Job(resp));
    }
    fn begin_drain(&mut self, env: &mut Env<'_>) {
        env.0.begin_drain(1, &mut self.0);
    }
}

impl Harness {
    fn new() -> Self {
        let mut router = Router::new();
        for (m, p, h) in [
            (Method::Get, "/hello", hello as SyncHandler),
            (Method::Post, "/echo", echo),
            (Method::Get, "/p/{name}", param),
            (Method::Get, "/boom", boom),
            (Method::Get, "/hog", hog),
            (Method::Get, "/deferred", deferred),
            (Method::Get, "/big", big),
        ] {
            router.add(Route::sync(m, p, h)).unwrap();
        }
        let plane = ControlPlane::start(8).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let region = Region::map(HUGEPAGE_BYTES, None, HugepagePolicy::Off).unwrap();
        let pool = Rc::new(ChunkPool::new(region, 64 << 10));
        let apps = Arc::new(AppSet::new(router, Shared::default()));
        let limits = HttpLimits::default();
        let d = dispatcher(&apps, &plane, &limits, &pool, now);
        Harness { apps, plane: Some(plane), d, built: limits.clone(), limits, pool, now }
    }

    /// A new connection (the dispatcher is rebuilt when a test changed the limits).
    fn conn(&mut self) -> TConn {
        if self.built != self.limits {
            let plane = self.plane.as_ref().expect("running");
            self.d = dispatcher(&self.apps, plane, &self.limits, &self.pool, self.now);
            self.built = self.limits.clone();
        }
        TConn(self.d.open())
    }

    fn env(&mut self) -> Env<'_> {
        Env(&mut self.d)
    }

    /// Feeds `input` in pieces of the given sizes and drains all output.
    fn feed(&mut self, conn: &mut TConn, input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            conn.receive(&input[start..end], &mut self.env());
            start = end;
            self.drain(conn, &mut out);
        }
        out
    }

    fn drain(&mut self, conn: &mut TConn, out: &mut Vec<u8>) {
        loop {
            let o = conn.output_vec();
            if o.is_empty() {
                break;
            }
            out.extend_from_slice(&o);
            let n = o.len();
            conn.consume(n, &mut self.env());
        }
    }

    fn once(&mut self, input: &[u8]) -> (Vec<Resp>, TConn) {
        let mut conn = self.conn();
        let out = self.feed(&mut conn, input, &[]);
        (parse_all(&out, false), conn)
    }
}

fn dispatcher(
    apps: &Arc<AppSet>,
    plane: &ControlPlane,
    limits: &HttpLimits,
    pool: &Rc<ChunkPool>,
    now: SystemTime,
) -> Dispatch {
    let cfg = DispatchConfig {
        limits: limits.clone(),
        arena_cap: 1 << 20,
        deadline: Duration::from_secs(5),
        max_in_flight: 16,
        file_reads: 64,
    };
    let mut d = Dispatch::new(apps.clone(), cfg, pool.clone(), plane.handle());
    d.tick(now, Instant::now());
    d
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(p) = self.plane.take() {
            p.shutdown();
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Splits a byte stream into responses (Content-Length framing; HEAD responses have no body).
fn parse_all(mut buf: &[u8], head: bool) -> Vec<Resp> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(buf).expect("well-formed response") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial response: {:?}", String::from_utf8_lossy(buf)),
        };
        let headers: Vec<(String, String)> =
            r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
        let status = r.code.unwrap();
        let len: usize = if status == 100 || head {
            0
        } else {
            headers.iter().find(|(k, _)| k == "Content-Length").map(|(_, v)| v.parse().unwrap()).unwrap()
        };
        out.push(Resp { status, headers, body: buf[n..n + len].to_vec() });
        buf = &buf[n + len..];
    }
    out
}

const GET: &[u8] = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn every_response_has_the_mandatory_headers() {
    let mut h = Harness::new();
    for req in [
        &b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (rs, _) = h.once(req);
        let r = &rs[0];
        assert_eq!(r.header("Server"), Some("px-appliance"));
        assert_eq!(r.header("Date"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
        assert!(r.header("Content-Type").is_some());
        assert_eq!(r.header("Content-Length").unwrap().parse::<usize>().unwrap(), r.body.len());
    }
}

#[test]
fn request_split_at_every_byte_boundary() {
    let mut h = Harness::new();
    let inputs: [&[u8]; 3] = [
        GET,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n",
    ];
    for input in inputs {
        let mut whole = h.conn();
        let expected = h.feed(&mut whole, input, &[]);
        assert_eq!(parse_all(&expected, false).len(), 1);
        for cut in 1..input.len() {
            let mut c = h.conn();
            assert_eq!(h.feed(&mut c, input, &[cut]), expected, "split at {cut}");
        }
        // And one byte at a time.
        let mut c = h.conn();
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(h.feed(&mut c, input, &cuts), expected);
    }
}

#[test]
fn pipelined_batch_is_answered_in_order() {
    let mut h = Harness::new();
    let mut input = Vec::new();
    for i in 0..32 {
        input.extend_from_slice(format!("GET /p/n{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        if i % 5 == 0 {
            input.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        }
    }
    for cuts in [vec![], vec![7], vec![100, 101, 500]] {
        let mut c = h.conn();
        let rs = parse_all(&h.feed(&mut c, &input, &cuts), false);
        let bodies: Vec<String> = rs.iter().map(|r| String::from_utf8(r.body.clone()).unwrap()).collect();
        let mut want = Vec::new();
        for i in 0..32 {
            want.push(format!("n{i}"));
            if i % 5 == 0 {
                want.push("abc".into());
            }
        }
        assert_eq!(bodies, want);
        assert!(c.is_idle() && !c.wants_close());
    }
}

#[test]
fn keep_alive_rules() {
    let mut h = Harness::new();
    let (rs, c) = h.once(GET);
    assert_eq!(rs[0].header("Connection"), None);
    assert!(!c.wants_close());
    let (rs, c) =
        h.once(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(rs.len(), 1, "nothing after Connection: close is answered");
    assert_eq!(rs[0].header("Connection"), Some("close"));
    assert!(c.wants_close());
    let (rs, c) = h.once(b"GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(rs[0].header("Connection"), Some("close"));
    assert!(c.wants_close());
    let (rs, c) = h.once(
        b"GET /hello HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nGET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(rs.len(), 2);
    assert!(rs.iter().all(|r| r.header("Connection") == Some("keep-alive")));
    assert!(!c.wants_close());
}

#[test]
fn head_has_headers_only_with_the_get_length() {
    let mut h = Harness::new();
    let mut c = h.conn();
    let out = h.feed(&mut c, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
    let rs = parse_all(&out, true);
    assert_eq!(rs[0].status, 200);
    assert_eq!(rs[0].header("Content-Length"), Some("13"));
    assert!(out.ends_with(b"\r\n\r\n"));
    let out = h.feed(&mut c, b"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
    assert_eq!(parse_all(&out, true)[0].header("Content-Length"), Some("1048576"));
    assert!(out.ends_with(b"\r\n\r\n"), "no streamed body after HEAD");
}

/// A chunked POST of "abc" followed by `n` trailer lines `line`.
fn chunked_with_trailers(n: usize, line: &str) -> Vec<u8> {
    let mut r = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n".to_vec();
    for _ in 0..n {
        r.extend_from_slice(line.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

fn status_of(h: &mut Harness, req: &[u8]) -> (u16, Resp, bool) {
    let (rs, c) = h.once(req);
    assert_eq!(rs.len(), 1, "{:?}", String::from_utf8_lossy(req));
    (rs[0].status, rs[0].clone(), c.wants_close())
}

#[test]
fn limits_get_the_right_status() {
    let mut h = Harness::new();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let long_header = format!("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(9000));
    let many_lines: String = (0..1000).map(|i| format!("X-{i}: {}\r\n", "v".repeat(10))).collect();
    let big_block = format!("GET /hello HTTP/1.1\r\nHost: x\r\n{many_lines}\r\n");
    let too_many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
    let too_many = format!("GET /hello HTTP/1.1\r\nHost: x\r\n{too_many}\r\n");
    let cases: Vec<(Vec<u8>, u16, bool)> = vec![
        (long_uri.into_bytes(), 414, true),
        (long_header.into_bytes(), 431, true),
        (big_block.into_bytes(), 431, true),
        (too_many.into_bytes(), 431, true),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n".to_vec(), 413, true),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), 400, true),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec(), 400, true),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(), 400, true),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), 501, true),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".to_vec(), 400, true),
        (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), 400, true),
        (b"GET /hello HTTP/1.1\nHost: x\r\n\r\n".to_vec(), 400, true),
        (b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n".to_vec(), 400, true),
        (b"GET /hello HTTP/1.1\r\nBad Name: v\r\n\r\n".to_vec(), 400, true),
        (b"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505, true),
        (b"GET /hello HTTP/0.9\r\nHost: x\r\n\r\n".to_vec(), 505, true),
        // RFC 9110 §2.5: a newer 1.x minor version is served as 1.1.
        (b"GET /hello HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(), 200, false),
        (b"GET /hello HTTP/1.9\r\nHost: x\r\n\r\n".to_vec(), 200, false),
        // A malformed version is a malformed request line: 400, not 505.
        (b"GET /hello HTTP/1.10\r\nHost: x\r\n\r\n".to_vec(), 400, true),
        (b"GET /hello HTTP/3\r\nHost: x\r\n\r\n".to_vec(), 400, true),
        (b"GET /hello HTTP/22.0\r\nHost: x\r\n\r\n".to_vec(), 400, true),
        // RFC 9110 §7.2 / RFC 9112 §3.2: an invalid Host value is 400.
        (b"GET /hello HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: a/b\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: user@a\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: <a>\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: a:80x\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: a:99999\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: a:1:2\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: [::1\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: :80\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: example.com:8080\r\n\r\n".to_vec(), 200, false),
        (b"GET /hello HTTP/1.1\r\nHost: 10.99.0.1\r\n\r\n".to_vec(), 200, false),
        (b"GET /hello HTTP/1.1\r\nHost: [fd99::1]:8080\r\n\r\n".to_vec(), 200, false),
        (b"GET /hello HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n".to_vec(), 200, false),
        (b"GET /hello HTTP/1.1\r\nHost:\r\n\r\n".to_vec(), 200, false),
        // RFC 9112 §3.2.4: the asterisk-form, for OPTIONS only.
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 200, false),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, false),
        // Trailers: bounded in count and size, field lines only.
        (chunked_with_trailers(100_000, "X: v"), 431, true),
        (chunked_with_trailers(1, &format!("X: {}", "v".repeat(9000))), 431, true),
        (chunked_with_trailers(1, "no colon here"), 400, true),
        (chunked_with_trailers(1, " X: folded"), 400, true),
        (chunked_with_trailers(5, "X-Ok: fine"), 200, false),
        (b"GET /hello HTTX/1.1\r\nHost: x\r\n\r\n".to_vec(), 400, true),
        (b"BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 501, false),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 404, false),
        (b"GET /hello HTTP/1.1\r\n\r\n".to_vec(), 400, false),
        (b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400, false),
    ];
    for (req, want, closes) in cases {
        let (status, resp, closed) = status_of(&mut h, &req);
        assert_eq!(status, want, "{:?}", String::from_utf8_lossy(&req[..req.len().min(80)]));
        assert_eq!(closed, closes, "close after {want}");
        if closes {
            assert_eq!(resp.header("Connection"), Some("close"));
        }
    }
    let (status, resp, closed) = status_of(&mut h, b"DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((status, resp.header("Allow"), closed), (405, Some("GET, HEAD"), false));
    let (status, resp, _) = status_of(&mut h, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((status, resp.header("Content-Length")), (200, Some("0")));
    assert!(resp.header("Allow").is_some_and(|a| a.contains("GET") && a.contains("OPTIONS")));
    // The 1.x request served as 1.1 is answered as 1.1.
    let (rs, _) = h.once(b"GET /hello HTTP/1.7\r\nHost: x\r\n\r\n");
    assert_eq!(rs[0].body, b"Hello, World!");
}

#[test]
fn refusals_never_echo_the_request() {
    let mut h = Harness::new();
    let method = "Q".repeat(10_000);
    for req in [
        format!("{method} /hello HTTP/1.1\r\nHost: x\r\n\r\n"),
        "GET /hello HTTP/1.1\r\nHost: <script>evil</script>\r\n\r\n".to_string(),
        "GET /hello HTTP/7.0\r\nHost: x\r\n\r\n".to_string(),
        "GET /evil-marker HTTP/1.1\r\nHost: x\r\nContent-Length: evil-marker\r\n\r\n".to_string(),
    ] {
        let (rs, _) = h.once(req.as_bytes());
        let body = String::from_utf8_lossy(&rs[0].body).into_owned();
        assert!(rs[0].status >= 400 && body.len() < 100, "{} {body}", rs[0].status);
        assert!(!body.contains("QQQ") && !body.contains("evil"), "{body}");
    }
    assert!(h.d.stats.rejected_by_status[5] >= 1, "501 counted: {:?}", h.d.stats.rejected_by_status);
}

/// Runs the dispatcher's clock forward to `at` and delivers what came due.
fn advance(h: &mut Harness, c: &mut TConn, at: Instant) -> Vec<u8> {
    h.d.tick(h.now, at);
    for (k, item) in h.d.run(at) {
        assert_eq!(k, 1);
        h.d.deliver(1, &mut c.0, item);
    }
    let mut out = Vec::new();
    h.drain(c, &mut out);
    out
}

#[test]
fn a_head_must_be_complete_within_header_timeout_however_slowly_it_trickles() {
    let mut h = Harness::new();
    h.limits.header_timeout_ms = 10_000;
    let t0 = Instant::now();
    let mut c = h.conn();
    h.d.tick(h.now, t0);
    // One byte a second: each byte would restart an idle timer; this one does not restart.
    let head = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut out = Vec::new();
    for (i, b) in head.iter().enumerate().take(10) {
        let at = t0 + Duration::from_secs(i as u64);
        out.extend(advance(&mut h, &mut c, at));
        c.receive(std::slice::from_ref(b), &mut h.env());
    }
    assert!(out.is_empty() && !c.wants_close(), "nothing before the deadline");
    assert_eq!(h.d.next_timer(), Some(t0 + Duration::from_secs(10)), "the loop wakes for the deadline");
    let out = advance(&mut h, &mut c, t0 + Duration::from_millis(10_001));
    let rs = parse_all(&out, false);
    assert_eq!(rs.len(), 1);
    assert_eq!((rs[0].status, rs[0].header("Connection")), (408, Some("close")));
    assert!(c.wants_close());
    assert_eq!((h.d.stats.head_timeouts, h.d.stats.body_timeouts), (1, 0));
}

#[test]
fn a_deadline_is_for_one_request_and_a_body_has_its_own() {
    let mut h = Harness::new();
    h.limits.header_timeout_ms = 1_000;
    h.limits.body_timeout_ms = 5_000;
    let t0 = Instant::now();
    let mut c = h.conn();
    h.d.tick(h.now, t0);
    // A head that completes in time: its deadline comes due later and is stale.
    c.receive(b"GET /hello HTTP/1.1\r\n", &mut h.env());
    advance(&mut h, &mut c, t0 + Duration::from_millis(500));
    c.receive(b"Host: x\r\n\r\n", &mut h.env());
    let mut out = Vec::new();
    h.drain(&mut c, &mut out);
    assert_eq!(parse_all(&out, false)[0].status, 200);
    // The next request starts at 0.9 s: its head has until 1.9 s, not 1 s.
    advance(&mut h, &mut c, t0 + Duration::from_millis(900));
    c.receive(b"POST /echo HTTP/1.1\r\nHost: x\r\n", &mut h.env());
    assert!(advance(&mut h, &mut c, t0 + Duration::from_millis(1_500)).is_empty() && !c.wants_close());
    // The head completes at 1.8 s; the body (10 bytes announced) then has 5 s.
    advance(&mut h, &mut c, t0 + Duration::from_millis(1_800));
    c.receive(b"Content-Length: 10\r\n\r\nabc", &mut h.env());
    assert!(advance(&mut h, &mut c, t0 + Duration::from_millis(6_700)).is_empty() && !c.wants_close());
    let rs = parse_all(&advance(&mut h, &mut c, t0 + Duration::from_millis(6_801)), false);
    assert_eq!((rs.len(), rs[0].status), (1, 408));
    assert!(c.wants_close());
    assert_eq!((h.d.stats.head_timeouts, h.d.stats.body_timeouts), (0, 1));
    // 0 turns a deadline off.
    h.limits.header_timeout_ms = 0;
    let mut c = h.conn();
    h.d.tick(h.now, t0);
    c.receive(b"GET /hello HTTP/1.1\r\n", &mut h.env());
    assert!(advance(&mut h, &mut c, t0 + Duration::from_secs(3600)).is_empty() && !c.wants_close());
}

#[test]
fn connection_stays_usable_after_a_4xx_that_keeps_framing() {
    let mut h = Harness::new();
    let input = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nBREW /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nzzDELETE /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let (rs, c) = h.once(input);
    let st: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert_eq!(st, [404, 501, 405, 200]);
    assert!(!c.wants_close());
}

#[test]
fn limits_are_configurable() {
    let mut h = Harness::new();
    h.limits.max_body_bytes = 4;
    h.limits.max_uri_bytes = 16;
    assert_eq!(status_of(&mut h, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde").0, 413);
    assert_eq!(
        status_of(
            &mut h,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"
        )
        .0,
        413
    );
    assert_eq!(status_of(&mut h, b"GET /p/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: x\r\n\r\n").0, 414);
}

#[test]
fn expect_continue_gets_100_before_the_body() {
    let mut h = Harness::new();
    let mut c = h.conn();
    let head = b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let out = h.feed(&mut c, head, &[]);
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    let out = h.feed(&mut c, b"data", &[]);
    let rs = parse_all(&out, false);
    assert_eq!((rs[0].status, rs[0].body.as_slice()), (200, &b"data"[..]));
}

#[test]
fn arena_is_rewound_after_the_response_is_handed_over() {
    let mut h = Harness::new();
    let mut c = h.conn();
    c.receive(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", &mut h.env());
    assert!(c.arena().used_bytes() > 0, "body copied into the arena");
    let n = c.output_len() - 3;
    c.consume(n, &mut h.env());
    assert!(c.arena().used_bytes() > 0, "not yet: 3 bytes still unsent");
    c.consume(3, &mut h.env());
    assert_eq!(c.arena().used_bytes(), 0);
    assert_eq!(h.pool.stats().chunks_free, h.pool.stats().chunks_total);
}

#[test]
fn arena_exhaustion_answers_503_and_closes_only_that_connection() {
    let mut h = Harness::new();
    let (st, _, closed) = status_of(&mut h, b"GET /hog HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((st, closed), (503, true));
    assert_eq!(h.d.stats.arena_failures, 1);
    assert_eq!(h.pool.stats().chunks_free, h.pool.stats().chunks_total, "memory returned");
    assert_eq!(status_of(&mut h, GET).0, 200);
}

#[test]
fn panicking_handler_answers_500() {
    let mut h = Harness::new();
    let (st, _, closed) =
        status_of(&mut h, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((st, closed), (500, true));
    assert_eq!(h.d.stats.handler_panics, 1);
    assert_eq!(status_of(&mut h, GET).0, 200, "the next connection is served");
}

#[test]
fn deferred_answer_keeps_pipelined_order() {
    let mut h = Harness::new();
    let (tx, rx) = std::sync::mpsc::channel();
    h.d.control().set_waker(Box::new(move || {
        let _ = tx.send(());
    }));
    let mut c = h.conn();
    let input = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /deferred HTTP/1.1\r\nHost: x\r\n\r\nGET /p/after HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut out = h.feed(&mut c, input, &[]);
    assert_eq!(parse_all(&out, false).len(), 1, "waits for the control thread");
    assert!(!c.wants_read());
    rx.recv_timeout(Duration::from_secs(5)).expect("control thread answered");
    let mut answers = h.d.run(Instant::now());
    let (id, resp) = match answers.pop() {
        Some((id, Delivery::Job(resp))) => (id, resp),
        other => panic!("expected the control thread's answer, got {other:?}"),
    };
    assert_eq!(id, 1);
    c.complete_deferred(resp, &mut h.env());
    h.drain(&mut c, &mut out);
    let bodies: Vec<Vec<u8>> = parse_all(&out, false).into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, [&b"Hello, World!"[..], b"from control", b"after"]);
}

#[test]
fn streamed_body_respects_backpressure() {
    let mut h = Harness::new();
    h.limits.output_high_water_bytes = 64 << 10;
    let mut c = h.conn();
    c.receive(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &mut h.env());
    assert!(c.output_len() <= (64 << 10) + 256, "buffered {} bytes", c.output_len());
    assert!(!c.wants_read());
    let mut out = Vec::new();
    h.drain(&mut c, &mut out);
    let rs = parse_all(&out, false);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].body.len(), 1 << 20);
    assert!(rs[0].body.iter().all(|&b| b == b'1'));
    assert_eq!(rs[1].body, b"Hello, World!");
}

#[test]
fn date_follows_the_passed_time() {
    let mut h = Harness::new();
    let (a, _) = h.once(GET);
    h.now += Duration::from_secs(1);
    let now = h.now;
    h.d.tick(now, Instant::now());
    let (b, _) = h.once(GET);
    assert_ne!(a[0].header("Date"), b[0].header("Date"));
}

#[test]
fn drain_finishes_the_request_in_progress_then_closes() {
    let mut h = Harness::new();
    let mut c = h.conn();
    let out = h.feed(&mut c, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab", &[]);
    assert!(out.is_empty());
    c.begin_drain(&mut h.env());
    assert!(!c.wants_close());
    let out = h.feed(&mut c, b"cdGET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
    let rs = parse_all(&out, false);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].body, b"abcd");
    assert_eq!(rs[0].header("Connection"), Some("close"));
    assert!(c.wants_close());
    let mut idle = h.conn();
    idle.begin_drain(&mut h.env());
    assert!(idle.wants_close());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut h = Harness::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let alphabet = b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n0123456789abcdef\r\n;: \t\x00\xff";
    for _ in 0..2000 {
        let mut c = h.conn();
        let len = (next(&mut seed) % 300) as usize;
        let input: Vec<u8> = (0..len).map(|_| alphabet[(next(&mut seed) % alphabet.len() as u64) as usize]).collect();
        let cut = if len > 0 { (next(&mut seed) % len as u64) as usize } else { 0 };
        let out = h.feed(&mut c, &input, &[cut]);
        if !out.is_empty() {
            parse_all(&out, false);
        }
    }
}

fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn arena_bodies_are_queued_by_reference_and_survive_partial_sends() {
    let mut h = Harness::new();
    let mut c = h.conn();
    let mut input = Vec::new();
    let bodies: Vec<Vec<u8>> =
        (0..3u8).map(|i| (0..3000u32).map(|j| (j as u8).wrapping_mul(i + 3)).collect()).collect();
    for b in &bodies {
        input.extend_from_slice(
            format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes(),
        );
        input.extend_from_slice(b);
    }
    c.receive(&input, &mut h.env());
    let total = c.output_len();
    // The bodies stay in the arena until the last byte is taken: heads are the only copies.
    assert_eq!(h.d.stats.body_bytes_by_reference, 9000);
    assert!(c.arena().used_bytes() > 0);
    let mut sent = Vec::new();
    let mut step = 1;
    while c.output_len() > 0 {
        assert!(c.arena().used_bytes() > 0, "arena rewound while output was pending");
        let n = step.min(c.output_len());
        let mut buf = vec![0; n];
        c.copy_output(0, &mut buf);
        sent.extend_from_slice(&buf);
        c.consume(n, &mut h.env());
        step = step * 3 + 1;
    }
    assert_eq!(sent.len(), total);
    assert_eq!(c.arena().used_bytes(), 0, "arena rewound once everything was sent");
    let resps = parse_all(&sent, false);
    assert_eq!(resps.len(), 3);
    for (r, b) in resps.iter().zip(&bodies) {
        assert_eq!(r.status, 200);
        assert_eq!(&r.body, b);
    }
}

#[test]
fn a_body_still_arriving_does_not_count_as_held_back_input() {
    let mut h = Harness::new();
    let mut c = h.conn();
    c.receive(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n", &mut h.env());
    c.receive(&[b'a'; 300_000], &mut h.env());
    // The request needs these bytes: a transport must keep its window open for the rest.
    assert_eq!(c.buffered_input(), 0);
    c.receive(&[b'a'; 200_000], &mut h.env());
    assert!(c.output_len() > 500_000);
}

struct LaterFile(Arc<std::fs::File>);

/// Answers `/later/999` at once; any other offset by reading 5 bytes of the shared file
/// there through the core's io_uring, on the executor.
fn later<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let off: u64 = req.param("off").and_then(|o| o.parse().ok()).ok_or_else(|| HandlerError::status(400, "off"))?;
    if off == 999 {
        return Ok(Response::ok("text/plain", b"at once").into());
    }
    let file = cx.shared::<LaterFile>().expect("registered").0.clone();
    let acx = cx.cx();
    cx.later(Box::pin(async move {
        let bytes = acx.read_at(file, off, 5).await.map_err(|e| HandlerError::status(500, e.to_string()))?;
        Ok(Response::new(200, "text/plain", Body::Owned(bytes)))
    }))
}

#[test]
fn a_sync_handler_can_finish_later_on_the_executor_in_order_and_within_the_cap() {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("px-later-{}", std::process::id()));
    std::fs::File::create(&path).unwrap().write_all(b"0123456789abcdef").unwrap();
    let file = Arc::new(std::fs::File::open(&path).unwrap());
    std::fs::remove_file(&path).unwrap();
    let mut router = Router::new();
    router.add(Route::sync(Method::Get, "/later/{off}", later)).unwrap();
    let mut shared = Shared::default();
    shared.insert(LaterFile(file));
    let apps = Arc::new(AppSet::new(router, shared));
    let plane = ControlPlane::start(8).unwrap();
    let region = Region::map(HUGEPAGE_BYTES, None, HugepagePolicy::Off).unwrap();
    let pool = Rc::new(ChunkPool::new(region, 64 << 10));
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let d = dispatcher(&apps, &plane, &HttpLimits::default(), &pool, now);
    if !Cx::for_core(d.exec().core().clone()).file_reads_available() {
        assert!(std::env::var_os("CI").is_none(), "io_uring refused in CI");
        eprintln!("io_uring unavailable here; skipping");
        return;
    }
    let mut c = TConn(d.open());
    let input = b"GET /later/0 HTTP/1.1\r\nHost: x\r\n\r\nGET /later/999 HTTP/1.1\r\nHost: x\r\n\r\nGET /later/10 HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut h = Harness {
        apps: apps.clone(),
        plane: None,
        d,
        limits: HttpLimits::default(),
        built: HttpLimits::default(),
        pool,
        now,
    };
    let mut out = h.feed(&mut c, input, &[]);
    assert!(out.is_empty(), "the first request waits for its read");
    let deadline = Instant::now() + Duration::from_secs(5);
    while parse_all(&out, false).len() < 3 {
        assert!(Instant::now() < deadline, "reads never completed: {:?}", String::from_utf8_lossy(&out));
        for (id, delivery) in h.d.run(Instant::now()) {
            assert_eq!(id, 1);
            h.d.deliver(1, &mut c.0, delivery);
        }
        h.drain(&mut c, &mut out);
    }
    let bodies: Vec<Vec<u8>> = parse_all(&out, false).into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, [&b"01234"[..], b"at once", b"abcde"]);
    assert!(h.d.exec().core().file_read_counters().file_reads >= 2);
    // The per-core cap (16 in flight) holds for futures from sync handlers too.
    let mut conns: Vec<TConn> = (0..17).map(|_| TConn(h.d.open())).collect();
    let mut statuses = Vec::new();
    for c in &mut conns {
        let out = h.feed(c, b"GET /later/3 HTTP/1.1\r\nHost: x\r\n\r\n", &[]);
        statuses.extend(parse_all(&out, false).into_iter().map(|r| r.status));
    }
    assert_eq!(statuses, [503], "the 17th is refused at once, the 16 wait for their reads");
    drop(h);
    plane.shutdown();
}
