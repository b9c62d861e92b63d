//! Responses as handlers build them, and their serialisation.

use std::io;

use super::{reason_phrase, DateCache};

/// A body that is produced as the connection drains (large or generated bodies).
pub trait BodySource {
    /// Appends at most `max` bytes to `out` and returns how many; 0 means the end.
    fn fill(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize>;
}

/// A response body.
pub enum Body<'a> {
    /// No body (Content-Length: 0).
    Empty,
    /// Bytes with static lifetime.
    Static(&'static [u8]),
    /// Bytes borrowed from the arena, shared state, or the request.
    Slice(&'a [u8]),
    /// Owned bytes.
    Owned(Vec<u8>),
    /// `len` bytes pulled from `source` while the connection drains.
    Stream {
        /// Exact length (sent as Content-Length).
        len: u64,
        /// Where the bytes come from.
        source: Box<dyn BodySource>,
    },
}

impl std::fmt::Debug for Body<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.len())
    }
}

impl Body<'_> {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static(b) => b.len() as u64,
            Body::Slice(b) => b.len() as u64,
            Body::Owned(b) => b.len() as u64,
            Body::Stream { len, .. } => *len,
        }
    }

    /// True when the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response as a handler returns it. `Server`, `Date`, `Content-Length` and
/// `Connection` are added by the engine.
#[derive(Debug)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// Content-Type value.
    pub content_type: &'static str,
    /// Further header fields (empty costs no allocation).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Body<'a>,
}

impl<'a> Response<'a> {
    /// A response with the given status, type and body.
    pub fn new(status: u16, content_type: &'static str, body: Body<'a>) -> Self {
        Response { status, content_type, headers: Vec::new(), body }
    }

    /// 200 with a body borrowed for `'a`.
    pub fn ok(content_type: &'static str, body: &'a [u8]) -> Self {
        Self::new(200, content_type, Body::Slice(body))
    }

    /// A short text/plain response (used for errors).
    pub fn text(status: u16, text: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", Body::Owned(text.into()))
    }

    /// Adds a header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A response that can cross threads (the control thread's answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedResponse {
    /// Status code.
    pub status: u16,
    /// Content-Type value.
    pub content_type: &'static str,
    /// Further header fields.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl OwnedResponse {
    /// A response with an owned body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        OwnedResponse { status, content_type, headers: Vec::new(), body: body.into() }
    }

    /// Into a [`Response`].
    pub fn into_response(self) -> Response<'static> {
        Response {
            status: self.status,
            content_type: self.content_type,
            headers: self.headers,
            body: Body::Owned(self.body),
        }
    }
}

/// Room reserved for a status line (the longest reason phrase is 31 bytes).
const STATUS_LINE_MAX: usize = 48;
/// Room reserved for `Content-Length` with its value, `Connection` and the blank line.
const HEAD_TAIL_MAX: usize = 64;

/// Writes the status line and header block.
pub(crate) fn write_head(out: &mut Vec<u8>, resp: &Response<'_>, date: &DateCache, conn_header: Option<&[u8]>) {
    let mut itoa = itoa::Buffer::new();
    // One capacity check for the usual head (the pieces below are then plain copies).
    out.reserve(STATUS_LINE_MAX + date.head_block().len() + resp.content_type.len() + HEAD_TAIL_MAX);
    if resp.status == 200 {
        out.extend_from_slice(b"HTTP/1.1 200 OK");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa.format(resp.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason_phrase(resp.status).as_bytes());
    }
    out.extend_from_slice(date.head_block());
    out.extend_from_slice(resp.content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(itoa.format(resp.body.len()).as_bytes());
    for (name, value) in &resp.headers {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
    }
    if let Some(c) = conn_header {
        out.extend_from_slice(b"\r\nConnection: ");
        out.extend_from_slice(c);
    }
    out.extend_from_slice(b"\r\n\r\n");
}
