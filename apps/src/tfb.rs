//! TechEmpower Framework Benchmarks: plaintext and json.
//!
//! Rules followed: the JSON body is serialised per request with serde_json (here into
//! the connection's arena) from a fresh object; plaintext is the fixed string; both carry
//! Server, Date, Content-Type and Content-Length (added by the engine).

use px_dataplane::app::{Ctx, HandlerError, Reply, Route};
use px_dataplane::http::{Method, Request, Response};
use serde::Serialize;

/// The app's routes.
pub const ROUTES: &[Route] =
    &[Route::sync(Method::Get, "/plaintext", plaintext), Route::sync(Method::Get, "/json", json)];

fn plaintext<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::ok("text/plain", b"Hello, World!").into())
}

#[derive(Serialize)]
struct Message<'s> {
    message: &'s str,
}

fn json<'a>(_: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let mut body = cx.arena().vec();
    body.reserve(32)?;
    serde_json::to_writer(&mut body, &Message { message: "Hello, World!" })
        .map_err(|e| HandlerError::status(500, e.to_string()))?;
    Ok(Response::ok("application/json", body.into_slice()).into())
}
