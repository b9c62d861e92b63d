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

use std::fmt::Write;

use px_dataplane::app::{ControlState, Ctx, HandlerError, Reply, Route, Shared};
use px_dataplane::http::{Method, OwnedResponse, Request, Response};

/// Read-only state built at mount time.
pub struct Greeting {
    /// Word put before the name.
    pub salutation: String,
}

/// Registers the app's shared state.
pub fn init(shared: &mut Shared) {
    shared.insert(Greeting { salutation: "Greetings".into() });
}

/// The app's routes.
pub const ROUTES: &[Route] = &[
    Route { method: Method::Get, pattern: "/demo/hello/{name}", handler: hello },
    Route { method: Method::Get, pattern: "/demo/greeting", handler: greeting },
    Route { method: Method::Get, pattern: "/demo/visits", handler: visits },
    Route { method: Method::Get, pattern: "/demo/counter", handler: counter },
    Route { method: Method::Post, pattern: "/demo/echo", handler: echo },
    Route { method: Method::Get, pattern: "/demo/alloc/{n}", handler: alloc },
    Route { method: Method::Get, pattern: "/demo/pattern/{n}", handler: pattern },
    Route { method: Method::Get, pattern: "/demo/panic", handler: panic },
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
