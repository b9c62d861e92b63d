//! TechEmpower Framework Benchmarks: every test of the suite.
//!
//! | route | test |
//! |---|---|
//! | `/plaintext` | the fixed string (pipelined in the benchmark) |
//! | `/json` | `{"message":"Hello, World!"}` serialised per request |
//! | `/db` | one random `World` row |
//! | `/queries?queries=N` | N random rows, one query each |
//! | `/updates?queries=N` | N rows read one query each, given new random numbers, persisted |
//! | `/fortunes` | every `Fortune` row plus one added, sorted, as an escaped HTML table |
//! | `/cached-queries?count=N` | N rows from an in-memory cache filled from the database |
//!
//! The rules followed (TechEmpower's "Framework Tests" overview): bodies serialised per
//! request from fresh objects; `Server`, `Date`, `Content-Type` and `Content-Length` on
//! every response (added by the engine); N clamped to 1..=500, a missing or non-numeric
//! N counts as 1; no row cached outside cached-queries; fortunes sorted in the app and
//! rendered by a template engine that escapes HTML. The database routes are async
//! handlers that use the core's own connection pool ([`db`]).

pub mod db;

use px_dataplane::app::{Ctx, HandlerError, Reply, Route};
use px_dataplane::http::{Method, Request, Response};
use serde::Serialize;

/// The app's routes.
pub const ROUTES: &[Route] = &[
    Route::sync(Method::Get, "/plaintext", plaintext),
    Route::sync(Method::Get, "/json", json),
    Route::asynchronous(Method::Get, "/db", db::single),
    Route::asynchronous(Method::Get, "/queries", db::queries),
    Route::asynchronous(Method::Get, "/updates", db::updates),
    Route::asynchronous(Method::Get, "/fortunes", db::fortunes),
    Route::asynchronous(Method::Get, "/cached-queries", db::cached_queries),
];

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
