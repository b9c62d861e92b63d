//! The HTTP/1.1 engine, sans-I/O.
//!
//! Bytes go in through [`HttpConn::receive`], response bytes come out of
//! [`HttpConn::output`] and are acknowledged with [`HttpConn::consume`]. The current time
//! is passed in ([`Env::now`]); nothing here reads a clock or makes a syscall, so the
//! engine runs the same over kernel sockets, our TCP engine, or a test harness.
//!
//! Panic contract: no input bytes can make the engine panic; malformed input yields the
//! status code RFC 9110/9112 prescribe (see [`limits`]) and, where framing is lost, a
//! close after the error response.

mod chunked;
mod conn;
mod date;
mod head;
pub mod limits;
mod outq;
mod request;
mod response;
mod status;

pub use conn::{Env, HttpConn, HttpStats};
pub use date::DateCache;
pub use limits::HttpLimits;
pub use outq::{OutQueue, INLINE_MAX};
pub use request::{percent_decode, DecodeError, Method, Request, Version, MAX_PARAMS as MAX_PARAMS_PUB};
pub use response::{Body, BodySource, OwnedResponse, Response};
pub use status::reason_phrase;

#[cfg(test)]
mod tests;
