//! The handler-API example app (docs/api.md walks through it). Mounted with
//! `--apps demo`; not part of the default set.
//!
//! - `GET /demo/hello/{name}`: a body formatted in the arena from a path parameter.
//! - `GET /demo/greeting?name=`: shared read-only state and a query parameter.
//! - `GET /demo/visits`: per-connection state that outlives a request.
//! - `GET /demo/counter`: a counter kept by the control thread (serialised across cores).
//! - `POST /demo/echo`: the request body back (Content-Length or chunked).
//! - `GET /demo/alloc/{n}`: allocates n bytes in the arena (503 beyond the cap).
//! - `GET /demo/pattern/{n}`: n bytes (byte i is i % 251) built in the arena and sent
//!   from there by reference: the transport copies them once, into its frames.
//! - `GET /demo/panic`: panics, to show that a panic answers 500 and the core goes on.
//! - `GET /demo/sleep/{ms}`: an async handler that waits `ms` on the core's timer heap,
//!   then answers; thousands wait at once on one core without a thread each.
//! - `GET /demo/upstream/{*path}`: an async handler that fetches `/{path}` from the
//!   configured upstream HTTP server (`demo.upstream`) over an outbound connection from
//!   the core, and relays its status and body. Upstream down: 502 at once; upstream
//!   silent: 504 at the request's deadline.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use px_dataplane::app::{ControlState, Ctx, Cx, HandlerError, HandlerFuture, OwnedRequest, Reply, Route, Shared};
use px_dataplane::config::DemoConfig;
use px_dataplane::http::{Body, Method, OwnedResponse, Request, Response};

/// Read-only state built at mount time.
pub struct Greeting {
    /// Word put before the name.
    pub salutation: String,
}

/// Where `/demo/upstream/...` fetches from.
pub struct UpstreamTarget {
    /// The upstream server (None: not configured).
    pub addr: Option<SocketAddr>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
}

/// Registers the app's shared state.
pub fn init(shared: &mut Shared, cfg: &DemoConfig) {
    shared.insert(Greeting { salutation: "Greetings".into() });
    shared.insert(UpstreamTarget {
        addr: cfg.upstream.parse().ok(),
        connect_timeout: Duration::from_millis(cfg.upstream_connect_timeout_ms),
    });
}

/// The app's routes.
pub const ROUTES: &[Route] = &[
    Route::sync(Method::Get, "/demo/hello/{name}", hello),
    Route::sync(Method::Get, "/demo/greeting", greeting),
    Route::sync(Method::Get, "/demo/visits", visits),
    Route::sync(Method::Get, "/demo/counter", counter),
    Route::sync(Method::Post, "/demo/echo", echo),
    Route::sync(Method::Get, "/demo/alloc/{n}", alloc),
    Route::sync(Method::Get, "/demo/pattern/{n}", pattern),
    Route::sync(Method::Get, "/demo/panic", panic),
    Route::asynchronous(Method::Get, "/demo/sleep/{ms}", sleep),
    Route::asynchronous(Method::Get, "/demo/upstream/{*path}", upstream),
];

fn hello<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let name = req.param_decoded("name").ok_or_else(|| HandlerError::status(400, "name is not UTF-8\n"))?;
    let mut body = cx.arena().vec();
    writeln!(body, "Hello, {name}!").map_err(|_| HandlerError::status(503, "arena full\n"))?;
    Ok(Response::ok("text/plain; charset=utf-8", body.into_slice()).into())
}

fn greeting<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let g = cx.shared::<Greeting>().ok_or_else(|| HandlerError::status(500, "demo not initialised\n"))?;
    let name = req.query("name").unwrap_or_else(|| "stranger".into());
    let text = cx.arena().alloc_str(&format!("{}, {name}.\n", g.salutation))?;
    Ok(Response::ok("text/plain; charset=utf-8", text.as_bytes()).into())
}

#[derive(Default)]
struct Visits(u64);

fn visits<'a>(_: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let v = cx.conn_state::<Visits>();
    v.0 += 1;
    let n = v.0;
    let text = cx.arena().alloc_str(&format!("visit {n} on this connection\n"))?;
    Ok(Response::ok("text/plain; charset=utf-8", text.as_bytes()).into())
}

#[derive(Default)]
struct Count(u64);

fn counter<'a>(_: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    cx.call_control(Box::new(|state: &mut ControlState| {
        let c = state.get_or_default::<Count>();
        c.0 += 1;
        OwnedResponse::new(200, "application/json", format!("{{\"count\":{}}}", c.0))
    }))
}

fn echo<'a>(req: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::ok("application/octet-stream", req.body()).into())
}

fn pattern<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let n: usize = req.param("n").and_then(|s| s.parse().ok()).ok_or_else(|| HandlerError::status(400, "bad n\n"))?;
    let body = cx.arena().alloc_bytes(n)?;
    for (i, b) in body.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    Ok(Response::ok("application/octet-stream", body).into())
}

fn alloc<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let n: usize = req.param("n").and_then(|s| s.parse().ok()).ok_or_else(|| HandlerError::status(400, "bad n\n"))?;
    let arena = cx.arena();
    let block = arena.alloc_bytes(n)?;
    block.fill(1);
    let text = arena.alloc_str(&format!("allocated {n}; arena holds {}\n", arena.used_bytes()))?;
    Ok(Response::ok("text/plain; charset=utf-8", text.as_bytes()).into())
}

fn panic<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    panic!("demo handler panicked on purpose");
}

fn sleep(req: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(async move {
        let ms: u64 =
            req.param("ms").and_then(|s| s.parse().ok()).ok_or_else(|| HandlerError::status(400, "bad ms\n"))?;
        cx.sleep(Duration::from_millis(ms)).await;
        Ok(Response::text(200, format!("slept {ms} ms\n")))
    })
}

/// Largest upstream response relayed.
const UPSTREAM_MAX_BYTES: usize = 64 << 20;

fn upstream(req: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(relay(req, cx))
}

async fn relay(req: OwnedRequest, cx: Cx) -> Result<Response<'static>, HandlerError> {
    let target = cx.shared::<UpstreamTarget>().ok_or_else(|| HandlerError::status(500, "demo not initialised\n"))?;
    let addr = target.addr.ok_or_else(|| HandlerError::status(503, "no upstream configured (demo.upstream)\n"))?;
    let bad_gateway =
        |e: px_dataplane::app::UpstreamError| HandlerError::status(502, format!("upstream {addr}: {e}\n"));
    let mut up = cx.connect(addr, target.connect_timeout).await.map_err(bad_gateway)?;
    let path = req.param("path").unwrap_or("");
    let query = if req.query.is_empty() { String::new() } else { format!("?{}", req.query) };
    // HTTP/1.0: the upstream closes after its response and never chunks it.
    let head = format!("GET /{path}{query} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: px-appliance\r\n\r\n");
    up.write_all(head.as_bytes()).await.map_err(bad_gateway)?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw, UPSTREAM_MAX_BYTES).await.map_err(bad_gateway)?;
    parse_upstream(&raw).ok_or_else(|| HandlerError::status(502, format!("upstream {addr}: malformed response\n")))
}

/// The status, type and body of an upstream's HTTP/1.x response.
fn parse_upstream(raw: &[u8]) -> Option<Response<'static>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = r.parse(raw).ok()? else { return None };
    let status = r.code?;
    let header = |name: &str| r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let body = &raw[n..];
    let len = match header("content-length") {
        Some(v) => std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok()?,
        None => body.len(),
    };
    if body.len() < len {
        return None; // cut short
    }
    let content_type = match header("content-type").map(|v| v.split(|&b| b == b';').next().unwrap_or(v)) {
        Some(b"text/html") => "text/html",
        Some(b"text/plain") => "text/plain",
        Some(b"application/json") => "application/json",
        _ => "application/octet-stream",
    };
    Some(Response::new(status, content_type, Body::Owned(body[..len].to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_responses_are_parsed_or_refused() {
        let r = parse_upstream(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=x\r\nContent-Length: 3\r\n\r\nabcEXTRA",
        )
        .unwrap();
        assert_eq!((r.status, r.content_type, r.body.len()), (404, "text/html", 3));
        let r = parse_upstream(b"HTTP/1.0 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(r.body.len(), 11);
        assert!(parse_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_none());
        assert!(parse_upstream(b"garbage").is_none());
    }
}
