//! The HTTP/1.1 engine, sans-I/O.
//!
//! Bytes go in through [`HttpConn::receive`]; [`HttpConn::poll_request`] yields each
//! complete request with the [`Answer`] slot that takes its response (now, or later
//! through [`HttpConn::respond`]); response bytes are gathered by the transport and
//! acknowledged with [`HttpConn::consume`]. The Date value comes from a [`DateCache`]
//! the caller updates; nothing here reads a clock, makes a syscall or runs application
//! code, so the engine runs the same over kernel sockets, our TCP engine, or a test
//! harness. Routing and handlers are the `app` layer's.
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

pub use conn::{header_slots, Answer, HeaderSlots, HttpConn, HttpStats, Incoming, ReqId, Waiting, REJECT_STATUSES};
pub use date::DateCache;
pub use limits::HttpLimits;
pub use outq::{OutQueue, INLINE_MAX};
pub use request::{percent_decode, query_param, DecodeError, Method, Request, Version, MAX_PARAMS as MAX_PARAMS_PUB};
pub use response::{Body, BodySource, OwnedResponse, Response};
pub use status::reason_phrase;
