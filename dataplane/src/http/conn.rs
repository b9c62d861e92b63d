//! One connection's HTTP/1.1 state machine.
//!
//! Flow: [`HttpConn::receive`] appends bytes and answers every complete request in order
//! (pipelining), writing responses to the output buffer. The transport sends from
//! [`HttpConn::output`] and reports progress with [`HttpConn::consume`]; once the output
//! is fully handed over, the arena is rewound to the mark taken when the first request of
//! the burst started, streamed bodies are pulled, and parsing resumes.
//!
//! Processing pauses (input stays buffered, [`HttpConn::wants_read`] turns false) while a
//! streamed body is being sent, while a control-thread answer is awaited, or while more
//! than `output_high_water_bytes` wait to be sent.

use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::SystemTime;

use super::chunked::{ChunkError, ChunkedDecoder};
use super::head::{reject_for, HeadScan, Reject, Scan};
use super::limits::MAX_HEADERS_CEILING;
use super::request::MAX_PARAMS;
use super::response::write_head;
use super::{BodySource, DateCache, HttpLimits, Method, OutQueue, OwnedResponse, Request, Response, Version};
use crate::app::{ConnState, ControlHandle, Ctx, HandlerError, Reply, Routed, Router, Shared};
use crate::mem::{Arena, Mark};

/// Bytes pulled from a streamed body per fill.
const STREAM_FILL_BYTES: usize = 64 << 10;
/// Output buffer capacity kept across requests; more is released when drained.
const OUT_KEEP_BYTES: usize = 64 << 10;

/// Per-core HTTP counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests whose head parsed.
    pub requests: u64,
    /// Responses by class: 1xx..5xx at index 1..5.
    pub responses_by_class: [u64; 6],
    /// Requests rejected before routing (framing, limits, syntax).
    pub rejected: u64,
    /// Handlers that panicked (answered 500).
    pub handler_panics: u64,
    /// Arena allocations that failed (answered 503).
    pub arena_failures: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes handed to the transport.
    pub bytes_out: u64,
    /// Body bytes queued by reference (arena or static), not copied before the transport.
    pub body_bytes_by_reference: u64,
}

/// What the engine needs from its core for one call.
pub struct Env<'e> {
    /// The current time (drives nothing but what handlers read; Date comes from `date`).
    pub now: SystemTime,
    /// The core's Date header cache, updated by the core loop.
    pub date: &'e DateCache,
    /// Limits.
    pub limits: &'e HttpLimits,
    /// Routes.
    pub router: &'e Router,
    /// Read-only shared state.
    pub shared: &'e Shared,
    /// The core's control-plane handle.
    pub control: &'e ControlHandle,
    /// Identifies this connection in control-thread answers.
    pub conn_id: u64,
    /// The core's counters.
    pub stats: &'e mut HttpStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
}

struct Pending {
    head_len: usize,
    framing: Framing,
    decoder: ChunkedDecoder,
}

struct Stream {
    source: Box<dyn BodySource>,
    left: u64,
}

/// How a response is to be written: for a HEAD request, on a keep-alive connection, in
/// which HTTP version (kept while a control answer is awaited).
#[derive(Clone, Copy)]
struct ReplyTo {
    head: bool,
    keep_alive: bool,
    version: Version,
}

/// One connection's engine state.
pub struct HttpConn {
    inbuf: Vec<u8>,
    out: OutQueue,
    scan: HeadScan,
    pending: Option<Pending>,
    body_buf: Vec<u8>,
    stream: Option<Stream>,
    deferred: Option<ReplyTo>,
    closing: bool,
    draining: bool,
    sent_continue: bool,
    arena: Arena,
    mark: Option<Mark>,
    state: ConnState,
    out_high_water: usize,
}

impl HttpConn {
    /// A fresh connection whose handlers allocate from `arena`.
    pub fn new(arena: Arena, limits: &HttpLimits) -> HttpConn {
        HttpConn {
            inbuf: Vec::new(),
            out: OutQueue::default(),
            scan: HeadScan::default(),
            pending: None,
            body_buf: Vec::new(),
            stream: None,
            deferred: None,
            closing: false,
            draining: false,
            sent_continue: false,
            arena,
            mark: None,
            state: ConnState::default(),
            out_high_water: limits.output_high_water_bytes,
        }
    }

    /// Feeds received bytes; answers every complete request it can.
    pub fn receive(&mut self, data: &[u8], env: &mut Env<'_>) {
        env.stats.bytes_in += data.len() as u64;
        if self.closing {
            return;
        }
        if self.inbuf.is_empty() {
            let used = self.process(data, env);
            self.inbuf.extend_from_slice(&data[used..]);
        } else {
            self.inbuf.extend_from_slice(data);
            self.process_inbuf(env);
        }
    }

    /// Bytes waiting to be sent.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Copies bytes `off..off + dst.len()` of the waiting output into `dst` (a transport
    /// gathering a segment straight into its frame).
    pub fn copy_output(&self, off: usize, dst: &mut [u8]) {
        self.out.copy_out(&self.arena, off, dst);
    }

    /// Up to `bufs.len()` pieces of the waiting output, for `writev`; returns how many.
    pub fn output_slices<'a>(&'a self, bufs: &mut [std::io::IoSlice<'a>]) -> usize {
        self.out.io_slices(&self.arena, bufs)
    }

    /// The waiting output as one vector (tests and diagnostics; transports gather).
    pub fn output_vec(&self) -> Vec<u8> {
        self.out.to_vec(&self.arena)
    }

    /// The transport sent `n` bytes of the waiting output.
    pub fn consume(&mut self, n: usize, env: &mut Env<'_>) {
        let n = n.min(self.out.len());
        self.out.consume(n);
        env.stats.bytes_out += n as u64;
        if !self.out.is_empty() {
            // A transport that holds unacknowledged bytes (our TCP engine) drains slowly:
            // keep a streamed body flowing once half the high-water mark is gone.
            if self.stream.is_some() && self.pending_out() < self.out_high_water / 2 {
                self.pump_stream();
            }
            return;
        }
        self.out.clear(OUT_KEEP_BYTES);
        self.pump_stream();
        if self.out.is_empty() && self.stream.is_none() && self.deferred.is_none() {
            if let Some(mark) = self.mark.take() {
                self.arena.rewind(mark);
            }
            self.process_inbuf(env);
        }
    }

    /// Delivers the control thread's answer for this connection.
    pub fn complete_deferred(&mut self, resp: OwnedResponse, env: &mut Env<'_>) {
        let Some(d) = self.deferred.take() else { return };
        self.write_response(resp.into_response(), d.head, d.keep_alive, d.version, env);
        self.process_inbuf(env);
    }

    /// False while the engine will not parse more input (backpressure, a stream or a
    /// control answer pending, or closing).
    pub fn wants_read(&self) -> bool {
        !self.closing && self.stream.is_none() && self.deferred.is_none() && self.pending_out() < self.high_water()
    }

    /// True when the transport should close: closing and everything sent.
    pub fn wants_close(&self) -> bool {
        self.closing && self.out.is_empty() && self.stream.is_none() && self.deferred.is_none()
    }

    /// True once no more output will be queued: the transport may send FIN after it.
    pub fn finishing(&self) -> bool {
        self.closing && self.stream.is_none() && self.deferred.is_none()
    }

    /// Received bytes held back because the engine is not reading (output above its
    /// high-water mark, a stream or control answer pending): a transport shrinks its
    /// window by this. Bytes of a request still arriving (a body larger than the window)
    /// do not count: they are waited for, and holding the window shut on them would
    /// stall the connection for good.
    pub fn buffered_input(&self) -> usize {
        if self.wants_read() {
            0
        } else {
            self.inbuf.len()
        }
    }

    /// No request in progress and nothing to send.
    pub fn is_idle(&self) -> bool {
        self.inbuf.is_empty()
            && self.out.is_empty()
            && self.pending.is_none()
            && self.stream.is_none()
            && self.deferred.is_none()
    }

    /// Graceful shutdown: answer what is in progress, then close.
    pub fn begin_drain(&mut self) {
        self.draining = true;
        if self.is_idle() {
            self.closing = true;
        }
    }

    /// The peer closed its sending side: answer what is buffered, then close.
    pub fn peer_closed(&mut self) {
        self.draining = true;
        if self.is_idle() || (self.deferred.is_none() && self.stream.is_none() && self.out.is_empty()) {
            self.closing = true;
        }
    }

    /// The connection's arena (for stats).
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    fn pending_out(&self) -> usize {
        self.out.len()
    }

    fn high_water(&self) -> usize {
        self.out_high_water
    }

    fn process_inbuf(&mut self, env: &mut Env<'_>) {
        if self.inbuf.is_empty() {
            if self.draining && self.is_idle() {
                self.closing = true;
            }
            return;
        }
        let buf = std::mem::take(&mut self.inbuf);
        let used = self.process(&buf, env);
        let mut buf = buf;
        buf.drain(..used);
        if buf.is_empty() && buf.capacity() > OUT_KEEP_BYTES {
            buf = Vec::new();
        }
        self.inbuf = buf;
        if self.draining && self.is_idle() {
            self.closing = true;
        }
    }

    fn blocked(&self, limits: &HttpLimits) -> bool {
        self.closing
            || self.stream.is_some()
            || self.deferred.is_some()
            || self.pending_out() >= limits.output_high_water_bytes
    }

    /// Answers complete requests at the front of `buf`; returns bytes consumed.
    fn process(&mut self, buf: &[u8], env: &mut Env<'_>) -> usize {
        let mut pos = 0;
        while !self.blocked(env.limits) {
            if self.pending.is_none() && self.scan.is_fresh() {
                while buf[pos..].starts_with(b"\r\n") {
                    pos += 2;
                }
                if self.draining && pos < buf.len() {
                    // A new request after shutdown began: refuse it by closing.
                    self.closing = true;
                    return buf.len();
                }
            }
            let req = &buf[pos..];
            if req.is_empty() {
                break;
            }
            match self.step(req, env) {
                Step::NeedMore => break,
                Step::Done(n) => pos += n,
                Step::Reject(r) => {
                    self.reject(r, env);
                    return buf.len();
                }
            }
        }
        pos
    }

    /// Tries to answer the request at the start of `req`.
    fn step(&mut self, req: &[u8], env: &mut Env<'_>) -> Step {
        let limits = env.limits;
        let (head_len, framing) = match &self.pending {
            Some(p) => (p.head_len, p.framing),
            None => match self.scan.scan(req, limits) {
                Ok(Scan::Partial) => return Step::NeedMore,
                Ok(Scan::Complete(n)) => (n, Framing::None),
                Err(r) => return Step::Reject(r),
            },
        };
        let mut headers = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS_CEILING];
        let mut parsed = httparse::Request::new(&mut []);
        match parsed.parse_with_uninit_headers(&req[..head_len], &mut headers[..limits.max_headers]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Step::Reject(Reject(400, "malformed request head")),
            Err(e) => return Step::Reject(reject_for(e, &req[..head_len])),
        }
        let version = if parsed.version == Some(0) { Version::Http10 } else { Version::Http11 };
        let framing = match &self.pending {
            Some(_) => framing,
            None => match body_framing(parsed.headers, version, limits) {
                Ok(f) => f,
                Err(r) => return Step::Reject(r),
            },
        };
        let (body_in_buf, raw_len) = match framing {
            Framing::None => (true, 0),
            Framing::Length(n) if req.len() - head_len >= n => (true, n),
            Framing::Length(_) => return self.await_body(head_len, framing, parsed.headers, version, env),
            Framing::Chunked => {
                let mut dec = self.pending.take().map(|p| p.decoder).unwrap_or_default();
                match dec.decode(&req[head_len..], &mut self.body_buf, limits.max_body_bytes) {
                    Ok(true) => (false, dec.consumed),
                    Ok(false) => {
                        self.pending = Some(Pending { head_len, framing, decoder: dec });
                        return self.await_body(head_len, framing, parsed.headers, version, env);
                    }
                    Err(ChunkError::TooLarge) => return Step::Reject(Reject(413, "request body too large")),
                    Err(ChunkError::Malformed(why)) => return Step::Reject(Reject(400, why)),
                }
            }
        };
        self.pending = None;
        self.scan = HeadScan::default();
        self.sent_continue = false;
        let body_buf = std::mem::take(&mut self.body_buf);
        let body: &[u8] = if body_in_buf { &req[head_len..head_len + raw_len] } else { &body_buf };
        self.dispatch(&parsed, version, body, env);
        self.body_buf = body_buf;
        self.body_buf.clear();
        Step::Done(head_len + raw_len)
    }

    fn await_body(
        &mut self,
        head_len: usize,
        framing: Framing,
        headers: &[httparse::Header<'_>],
        version: Version,
        env: &mut Env<'_>,
    ) -> Step {
        if self.pending.is_none() {
            self.pending = Some(Pending { head_len, framing, decoder: ChunkedDecoder::default() });
        }
        let expects_continue = headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue"));
        if expects_continue && version == Version::Http11 && !self.sent_continue {
            self.out.push_copy(b"HTTP/1.1 100 Continue\r\n\r\n");
            env.stats.responses_by_class[1] += 1;
            self.sent_continue = true;
        }
        Step::NeedMore
    }

    fn dispatch(&mut self, parsed: &httparse::Request<'_, '_>, version: Version, body: &[u8], env: &mut Env<'_>) {
        env.stats.requests += 1;
        let keep_alive = wants_keep_alive(parsed.headers, version) && !self.draining;
        let token = parsed.method.unwrap_or("");
        let target = parsed.path.unwrap_or("");
        let Some(method) = Method::parse(token) else {
            let r = Response::text(501, format!("method {token} is not implemented\n"));
            return self.write_response(r, false, keep_alive, version, env);
        };
        let head = method == Method::Head;
        if let Err(msg) = check_host(parsed.headers, version) {
            return self.write_response(Response::text(400, msg), head, keep_alive, version, env);
        }
        let Some((path, query)) = split_target(target) else {
            return self.write_response(
                Response::text(400, "malformed request-target\n"),
                head,
                keep_alive,
                version,
                env,
            );
        };
        let (handler, params, n_params) = match env.router.route(method, path) {
            Routed::Found { handler, params, n_params } => (handler, params, n_params),
            Routed::MethodNotAllowed(allow) => {
                let r = Response::text(405, "method not allowed\n").with_header("Allow", allow);
                return self.write_response(r, head, keep_alive, version, env);
            }
            Routed::NotFound => {
                return self.write_response(Response::text(404, "not found\n"), head, keep_alive, version, env)
            }
        };
        let request = Request { method, version, path, query, headers: parsed.headers, body, params, n_params };
        debug_assert!(n_params <= MAX_PARAMS);
        if self.mark.is_none() {
            self.mark = Some(self.arena.mark());
        }
        let mut ctx = Ctx {
            arena: &self.arena,
            shared: env.shared,
            conn: &mut self.state,
            control: env.control,
            now: env.now,
            conn_id: env.conn_id,
            deferred: false,
        };
        let result = catch_unwind(AssertUnwindSafe(|| handler(&request, &mut ctx)));
        let (resp, keep_alive) = match result {
            Ok(Ok(Reply::Now(resp))) => (resp, keep_alive),
            Ok(Ok(Reply::Deferred)) => {
                self.deferred = Some(ReplyTo { head, keep_alive, version });
                return;
            }
            Ok(Err(HandlerError::Status { status, message })) => (Response::text(status, message), keep_alive),
            Ok(Err(HandlerError::Arena(e))) => {
                env.stats.arena_failures += 1;
                tracing::debug!("arena: {e}; answering 503 and closing");
                (Response::text(503, format!("{e}\n")), false)
            }
            Err(_) => {
                env.stats.handler_panics += 1;
                tracing::error!("handler for {} {path} panicked; answered 500", method.as_str());
                (Response::text(500, "internal error\n"), false)
            }
        };
        // `resp` may borrow the arena; it is serialised (or its stream taken) right here.
        let to = ReplyTo { head, keep_alive, version };
        write_response_into(&mut self.out, &self.arena, &mut self.stream, &mut self.closing, resp, to, env);
        self.pump_stream();
    }

    fn write_response(
        &mut self,
        resp: Response<'_>,
        head: bool,
        keep_alive: bool,
        version: Version,
        env: &mut Env<'_>,
    ) {
        let to = ReplyTo { head, keep_alive: keep_alive && !self.draining, version };
        write_response_into(&mut self.out, &self.arena, &mut self.stream, &mut self.closing, resp, to, env);
        self.pump_stream();
    }

    fn reject(&mut self, r: Reject, env: &mut Env<'_>) {
        env.stats.rejected += 1;
        let resp = Response::text(r.0, format!("{}\n", r.1));
        let to = ReplyTo { head: false, keep_alive: false, version: Version::Http11 };
        write_response_into(&mut self.out, &self.arena, &mut self.stream, &mut self.closing, resp, to, env);
        self.pending = None;
        self.inbuf.clear();
    }

    fn pump_stream(&mut self) {
        while let Some(s) = &mut self.stream {
            if self.out.len() >= self.out_high_water {
                return;
            }
            let want = (s.left.min(STREAM_FILL_BYTES as u64)) as usize;
            let before = self.out.inline_len();
            let outcome = self.out.append_inline(|v| {
                let r = s.source.fill(v, want);
                (r, v.len() - before)
            });
            match outcome {
                (Ok(n), added) if n > 0 && n <= want && added == n => {
                    s.left -= n as u64;
                    if s.left == 0 {
                        self.stream = None;
                    }
                }
                (outcome, _) => {
                    tracing::warn!("body source failed ({outcome:?}); closing the connection");
                    self.out.truncate_inline(before);
                    self.stream = None;
                    self.closing = true;
                }
            }
        }
    }
}

enum Step {
    NeedMore,
    Done(usize),
    Reject(Reject),
}

fn write_response_into(
    out: &mut OutQueue,
    arena: &Arena,
    stream: &mut Option<Stream>,
    closing: &mut bool,
    resp: Response<'_>,
    to: ReplyTo,
    env: &mut Env<'_>,
) {
    let ReplyTo { head, keep_alive, version } = to;
    let conn_header: Option<&[u8]> = match (keep_alive, version) {
        (false, _) => Some(b"close"),
        (true, Version::Http10) => Some(b"keep-alive"),
        (true, Version::Http11) => None,
    };
    out.append_inline(|v| write_head(v, &resp, env.date, conn_header));
    env.stats.responses_by_class[(resp.status / 100).min(5) as usize] += 1;
    if !keep_alive {
        *closing = true;
    }
    if head {
        return;
    }
    match resp.body {
        super::Body::Empty => {}
        super::Body::Static(b) => env.stats.body_bytes_by_reference += out.push_static(b) as u64,
        super::Body::Slice(b) => env.stats.body_bytes_by_reference += out.push_body(b, arena) as u64,
        super::Body::Owned(b) => out.push_copy(&b),
        super::Body::Stream { len, source } => {
            if len > 0 {
                *stream = Some(Stream { source, left: len });
            }
        }
    }
}

/// RFC 9112 §6.3 message framing, refusing anything ambiguous.
fn body_framing(headers: &[httparse::Header<'_>], version: Version, limits: &HttpLimits) -> Result<Framing, Reject> {
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|&b| b == b',') {
                let v = parse_length(trim(part)).ok_or(Reject(400, "invalid Content-Length"))?;
                if length.is_some_and(|l| l != v) {
                    return Err(Reject(400, "conflicting Content-Length values"));
                }
                length = Some(v);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if te.is_some() {
                return Err(Reject(400, "repeated Transfer-Encoding"));
            }
            te = Some(h.value);
        }
    }
    match (te, length) {
        (Some(_), Some(_)) => Err(Reject(400, "both Content-Length and Transfer-Encoding")),
        (Some(_), None) if version == Version::Http10 => Err(Reject(400, "Transfer-Encoding in an HTTP/1.0 request")),
        (Some(te), None) => {
            let codings: Vec<&[u8]> = te.split(|&b| b == b',').map(trim).collect();
            if !codings.last().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
                return Err(Reject(400, "chunked must be the final transfer-coding"));
            }
            if codings.len() > 1 {
                return Err(Reject(501, "only the chunked transfer-coding is supported"));
            }
            Ok(Framing::Chunked)
        }
        (None, Some(n)) if n > limits.max_body_bytes as u64 => Err(Reject(413, "request body too large")),
        (None, Some(0)) | (None, None) => Ok(Framing::None),
        (None, Some(n)) => Ok(Framing::Length(n as usize)),
    }
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

fn wants_keep_alive(headers: &[httparse::Header<'_>], version: Version) -> bool {
    let (mut close, mut keep) = (false, false);
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("connection")) {
        for token in h.value.split(|&b| b == b',').map(trim) {
            close |= token.eq_ignore_ascii_case(b"close");
            keep |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    match version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    }
}

fn check_host(headers: &[httparse::Header<'_>], version: Version) -> Result<(), &'static str> {
    match headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).count() {
        0 if version == Version::Http11 => Err("HTTP/1.1 request without Host\n"),
        0 | 1 => Ok(()),
        _ => Err("more than one Host header\n"),
    }
}

/// Splits a request-target into (path, query). Accepts origin-form and absolute-form.
fn split_target(target: &str) -> Option<(&str, &str)> {
    let origin = if target.starts_with('/') {
        target
    } else {
        let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
        &rest[rest.find('/')?..]
    };
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    Some((path, query))
}
