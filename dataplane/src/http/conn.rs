//! One connection's HTTP/1.1 state machine, as pure protocol.
//!
//! Bytes go in with [`HttpConn::receive`]. [`HttpConn::poll_request`] yields the next
//! complete request with an [`Answer`] that takes its response: at once (a sync
//! handler), or later through [`HttpConn::respond`] after [`Answer::defer`] (a handler
//! that waits). Responses leave in request order: while one request waits for its
//! answer, the requests pipelined behind it stay buffered. The transport sends from the
//! output ([`HttpConn::copy_output`], [`HttpConn::output_slices`]) and reports progress
//! with [`HttpConn::consume`]; once everything is handed over, the arena is rewound to
//! the mark taken when the first request of the burst was yielded.
//!
//! The engine never runs application code, catches panics, or reads a clock: routing and
//! handlers live in `app::dispatch`.
//!
//! Requests are not yielded (input stays buffered, [`HttpConn::wants_read`] turns false)
//! while a streamed body is being sent, while an answer is awaited, or while more than
//! `output_high_water_bytes` wait to be sent.

use std::mem::MaybeUninit;

use super::chunked::{ChunkError, ChunkedDecoder, TrailerLimits};
use super::head::{reject_for, HeadScan, Reject, Scan};
use super::request::MAX_PARAMS;
use super::response::write_head;
use super::{BodySource, DateCache, HttpLimits, Method, OutQueue, Request, Response, Version};
use crate::mem::{Arena, Mark};

/// Bytes pulled from a streamed body per fill.
const STREAM_FILL_BYTES: usize = 64 << 10;
/// Buffer capacity kept across requests; more is released when drained.
const KEEP_BYTES: usize = 64 << 10;

/// Storage for the header fields of one request, lent to [`HttpConn::poll_request`].
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; super::limits::MAX_HEADERS_CEILING];

/// Fresh header storage for [`HttpConn::poll_request`].
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [MaybeUninit::uninit(); super::limits::MAX_HEADERS_CEILING]
}

/// Per-core HTTP counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests whose head parsed.
    pub requests: u64,
    /// Responses by class: 1xx..5xx at index 1..5.
    pub responses_by_class: [u64; 6],
    /// Requests rejected before routing (framing, limits, syntax, deadlines).
    pub rejected: u64,
    /// The same, by the status they were answered: see [`REJECT_STATUSES`].
    pub rejected_by_status: [u64; REJECT_STATUSES.len()],
    /// Heads not complete within `header_timeout_ms` (answered 408).
    pub head_timeouts: u64,
    /// Bodies not complete within `body_timeout_ms` (answered 408).
    pub body_timeouts: u64,
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

/// The statuses a request can be refused with before routing, in the order
/// [`HttpStats::rejected_by_status`] counts them.
pub const REJECT_STATUSES: [u16; 8] = [400, 408, 413, 414, 431, 501, 505, 0];

impl HttpStats {
    /// Counts one refusal answered `status`.
    fn count_reject(&mut self, status: u16) {
        self.rejected += 1;
        let i = REJECT_STATUSES.iter().position(|&s| s == status).unwrap_or(REJECT_STATUSES.len() - 1);
        self.rejected_by_status[i] += 1;
    }
}

/// What a connection waits for from its client: the deadline that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Nothing (idle between requests, or we are the ones busy: a handler, output).
    Nothing,
    /// The rest of a request head whose first bytes are in (`header_timeout_ms`).
    Head,
    /// The body of a request whose head is in (`body_timeout_ms`).
    Body,
}

/// Identifies a request on its connection, for a deferred [`HttpConn::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId(u64);

impl ReqId {
    /// A request id from its number (tests and diagnostics).
    pub fn from_raw(n: u64) -> ReqId {
        ReqId(n)
    }
}

/// What [`HttpConn::poll_request`] found.
#[derive(Debug)]
pub enum Incoming<'c> {
    /// A request to route and answer.
    Request(Request<'c>),
    /// A request the protocol already refuses (unknown method, missing Host, bad
    /// target), with the response to send; framing is intact, the connection goes on.
    Invalid(Response<'static>),
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
/// which HTTP version (kept while an answer is awaited).
#[derive(Clone, Copy, Debug)]
struct ReplyTo {
    head: bool,
    keep_alive: bool,
    version: Version,
}

/// The receive half: buffered bytes and the request being parsed.
#[derive(Default)]
struct Input {
    buf: Vec<u8>,
    /// Start of the first byte not yet yielded as part of a request.
    pos: usize,
    scan: HeadScan,
    pending: Option<Pending>,
    body_buf: Vec<u8>,
    sent_continue: bool,
    next_id: u64,
}

/// The send half: queued output and what may still be added to it.
struct Output {
    out: OutQueue,
    stream: Option<Stream>,
    awaiting: Option<(ReqId, ReplyTo)>,
    closing: bool,
    draining: bool,
    mark: Option<Mark>,
    high_water: usize,
}

/// One connection's engine state.
pub struct HttpConn {
    input: Input,
    output: Output,
    arena: Arena,
}

/// The answer slot of one yielded request. Send the response with [`Answer::send`], or
/// [`Answer::defer`] it and hand it to [`HttpConn::respond`] later. Dropped unanswered,
/// it answers 500 and closes (a bug in the caller, made visible instead of a hang).
#[must_use = "a request must be answered or deferred"]
pub struct Answer<'c> {
    out: &'c mut Output,
    arena: &'c Arena,
    date: &'c DateCache,
    stats: &'c mut HttpStats,
    to: ReplyTo,
    id: ReqId,
    done: bool,
}

impl<'c> Answer<'c> {
    /// The connection's arena: what a handler allocates there lives until the response
    /// has been sent.
    pub fn arena(&self) -> &'c Arena {
        self.arena
    }

    /// True when the response goes out without its body (the request was HEAD).
    pub fn head_only(&self) -> bool {
        self.to.head
    }

    /// The core's counters (the dispatcher counts panics and arena failures there).
    pub fn stats(&mut self) -> &mut HttpStats {
        self.stats
    }

    /// Queues `resp` as this request's response.
    pub fn send(mut self, resp: Response<'_>) {
        self.done = true;
        self.out.write(resp, self.to, self.arena, self.date, self.stats);
    }

    /// Queues `resp` and closes the connection after it (the request's handler failed in
    /// a way that leaves the connection's state in doubt).
    pub fn send_and_close(mut self, resp: Response<'_>) {
        self.to.keep_alive = false;
        self.send(resp);
    }

    /// The response will come later through [`HttpConn::respond`]; until then no later
    /// request on this connection is yielded.
    pub fn defer(mut self) -> ReqId {
        self.done = true;
        self.out.awaiting = Some((self.id, self.to));
        self.id
    }
}

impl Drop for Answer<'_> {
    fn drop(&mut self) {
        if !self.done {
            tracing::error!("a request was neither answered nor deferred; answering 500");
            self.to.keep_alive = false;
            self.out.write(Response::text(500, "internal error\n"), self.to, self.arena, self.date, self.stats);
        }
    }
}

impl HttpConn {
    /// A fresh connection whose handlers allocate from `arena`.
    pub fn new(arena: Arena, limits: &HttpLimits) -> HttpConn {
        HttpConn {
            input: Input::default(),
            output: Output {
                out: OutQueue::default(),
                stream: None,
                awaiting: None,
                closing: false,
                draining: false,
                mark: None,
                high_water: limits.output_high_water_bytes,
            },
            arena,
        }
    }

    /// Buffers received bytes; [`poll_request`](Self::poll_request) parses them.
    pub fn receive(&mut self, data: &[u8], stats: &mut HttpStats) {
        stats.bytes_in += data.len() as u64;
        if self.output.closing {
            return;
        }
        let inp = &mut self.input;
        if inp.pos == inp.buf.len() {
            inp.buf.clear();
            inp.pos = 0;
            if inp.buf.capacity() > KEEP_BYTES {
                inp.buf = Vec::new();
            }
        } else if inp.pos > 0 {
            inp.buf.drain(..inp.pos);
            inp.pos = 0;
        }
        inp.buf.extend_from_slice(data);
    }

    /// The next complete request, with the slot for its answer; `None` when no complete
    /// request is buffered or the engine is not yielding (see the module doc). Requests
    /// whose framing is lost are answered here (4xx, then close) and never yielded.
    pub fn poll_request<'c>(
        &'c mut self,
        headers: &'c mut HeaderSlots<'c>,
        limits: &HttpLimits,
        date: &'c DateCache,
        stats: &'c mut HttpStats,
    ) -> Option<(Incoming<'c>, Answer<'c>)> {
        let HttpConn { input, output, arena } = self;
        let arena: &'c Arena = arena;
        if output.draining && input.pos == input.buf.len() && input.pending.is_none() && output.idle() {
            output.closing = true;
        }
        if output.blocked() {
            return None;
        }
        let Input { buf, pos, scan, pending, body_buf, sent_continue, next_id } = input;
        if pending.is_none() {
            body_buf.clear(); // the previous request's decoded body
        }
        if pending.is_none() && scan.is_fresh() {
            while buf[*pos..].starts_with(b"\r\n") {
                *pos += 2;
            }
            if output.draining && *pos < buf.len() {
                // A new request after shutdown began: refuse it by closing.
                output.closing = true;
                *pos = buf.len();
                return None;
            }
        }
        if *pos == buf.len() {
            return None;
        }
        let (head_len, framing) = match pending {
            Some(p) => (p.head_len, p.framing),
            None => match scan.scan(&buf[*pos..], limits) {
                Ok(Scan::Partial) => return None,
                Ok(Scan::Complete(n)) => {
                    newer_minor_as_11(&mut buf[*pos..*pos + scan.request_line()]);
                    (n, Framing::None)
                }
                Err(r) => {
                    input_reset(pos, buf.len(), pending);
                    return output.reject(r, arena, date, stats);
                }
            },
        };
        let buf: &'c [u8] = buf;
        let req = &buf[*pos..];
        let mut parsed = httparse::Request::new(&mut []);
        match parsed.parse_with_uninit_headers(&req[..head_len], &mut headers[..limits.max_headers]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                let r = Reject(400, "malformed request head");
                {
                    input_reset(pos, buf.len(), pending);
                    return output.reject(r, arena, date, stats);
                };
            }
            Err(e) => {
                let r = reject_for(e, &req[..head_len]);
                {
                    input_reset(pos, buf.len(), pending);
                    return output.reject(r, arena, date, stats);
                };
            }
        }
        let version = if parsed.version == Some(0) { Version::Http10 } else { Version::Http11 };
        let framing = match pending {
            Some(_) => framing,
            None => match body_framing(parsed.headers, version, limits) {
                Ok(f) => f,
                Err(r) => {
                    input_reset(pos, buf.len(), pending);
                    return output.reject(r, arena, date, stats);
                }
            },
        };
        let (chunked_body, raw_len) = match framing {
            Framing::None => (false, 0),
            Framing::Length(n) if req.len() - head_len >= n => (false, n),
            Framing::Length(_) => {
                output.await_body(pending, head_len, framing, parsed.headers, version, sent_continue, stats);
                return None;
            }
            Framing::Chunked => {
                let mut dec = pending.take().map(|p| p.decoder).unwrap_or_default();
                let trailers = TrailerLimits { max_bytes: limits.max_trailer_bytes, max_fields: limits.max_trailers };
                match dec.decode(&req[head_len..], body_buf, limits.max_body_bytes, trailers) {
                    Ok(true) => (true, dec.consumed),
                    Ok(false) => {
                        *pending = Some(Pending { head_len, framing, decoder: dec });
                        output.await_body(pending, head_len, framing, parsed.headers, version, sent_continue, stats);
                        return None;
                    }
                    Err(ChunkError::TooLarge) => {
                        let r = Reject(413, "request body too large");
                        {
                            input_reset(pos, buf.len(), pending);
                            return output.reject(r, arena, date, stats);
                        };
                    }
                    Err(ChunkError::TrailersTooLarge) => {
                        input_reset(pos, buf.len(), pending);
                        return output.reject(Reject(431, "trailer section too large"), arena, date, stats);
                    }
                    Err(ChunkError::Malformed(why)) => {
                        let r = Reject(400, why);
                        {
                            input_reset(pos, buf.len(), pending);
                            return output.reject(r, arena, date, stats);
                        };
                    }
                }
            }
        };
        *pending = None;
        *scan = HeadScan::default();
        *sent_continue = false;
        *pos += head_len + raw_len;
        let body: &'c [u8] = if chunked_body { body_buf } else { &req[head_len..head_len + raw_len] };
        stats.requests += 1;
        let (keep_alive, host) = connection_and_host(parsed.headers, version);
        let keep_alive = keep_alive && !output.draining;
        let token = parsed.method.unwrap_or("");
        let target = parsed.path.unwrap_or("");
        let method = Method::parse(token);
        let to = ReplyTo { head: method == Some(Method::Head), keep_alive, version };
        if output.mark.is_none() {
            output.mark = Some(arena.mark());
        }
        *next_id += 1;
        let answer = Answer { out: output, arena, date, stats, to, id: ReqId(*next_id), done: false };
        // Refusals never echo what the client sent (a 10,000-byte method reflected back
        // is an amplifier and a way to smuggle bytes into logs and caches).
        let Some(method) = method else {
            answer.stats.count_reject(501);
            return Some((Incoming::Invalid(Response::text(501, "method not implemented\n")), answer));
        };
        if let Err(msg) = host {
            answer.stats.count_reject(400);
            return Some((Incoming::Invalid(Response::text(400, msg)), answer));
        }
        if target == "*" {
            // The asterisk-form (RFC 9112 §3.2.4) asks about the server as a whole, and
            // only OPTIONS may use it: say what methods it serves.
            if method == Method::Options {
                let allow = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";
                return Some((
                    Incoming::Invalid(
                        Response::new(200, "text/plain; charset=utf-8", super::Body::Empty).with_header("Allow", allow),
                    ),
                    answer,
                ));
            }
            answer.stats.count_reject(400);
            return Some((Incoming::Invalid(Response::text(400, "the asterisk-form is for OPTIONS only\n")), answer));
        }
        let Some((path, query)) = split_target(target) else {
            answer.stats.count_reject(400);
            return Some((Incoming::Invalid(Response::text(400, "malformed request-target\n")), answer));
        };
        let request = Request {
            method,
            version,
            path,
            query,
            headers: parsed.headers,
            body,
            params: [("", ""); MAX_PARAMS],
            n_params: 0,
        };
        Some((Incoming::Request(request), answer))
    }

    /// Queues the response of deferred request `id`; false (and nothing queued) if that
    /// request is not the one awaited (the connection was reused or it was answered).
    /// With `close`, the connection closes after it.
    pub fn respond(
        &mut self,
        id: ReqId,
        resp: Response<'_>,
        close: bool,
        date: &DateCache,
        stats: &mut HttpStats,
    ) -> bool {
        match self.output.awaiting {
            Some((want, to)) if want == id => {
                self.output.awaiting = None;
                let to = ReplyTo { keep_alive: to.keep_alive && !self.output.draining && !close, ..to };
                self.output.write(resp, to, &self.arena, date, stats);
                true
            }
            _ => false,
        }
    }

    /// The client went away while a request waited for its answer: forget the request
    /// and close once what is queued is sent.
    pub fn abandon_awaiting(&mut self) {
        self.output.awaiting = None;
        self.output.closing = true;
        self.output.draining = true;
    }

    /// The request awaiting a deferred answer, if any.
    pub fn awaiting(&self) -> Option<ReqId> {
        self.output.awaiting.map(|(id, _)| id)
    }

    /// Bytes waiting to be sent.
    pub fn output_len(&self) -> usize {
        self.output.out.len()
    }

    /// Copies bytes `off..off + dst.len()` of the waiting output into `dst` (a transport
    /// gathering a segment straight into its frame).
    pub fn copy_output(&self, off: usize, dst: &mut [u8]) {
        self.output.out.copy_out(&self.arena, off, dst);
    }

    /// Up to `bufs.len()` pieces of the waiting output, for `writev`; returns how many.
    pub fn output_slices<'a>(&'a self, bufs: &mut [std::io::IoSlice<'a>]) -> usize {
        self.output.out.io_slices(&self.arena, bufs)
    }

    /// The waiting output as one vector (tests and diagnostics; transports gather).
    pub fn output_vec(&self) -> Vec<u8> {
        self.output.out.to_vec(&self.arena)
    }

    /// The transport sent `n` bytes of the waiting output. Call
    /// [`poll_request`](Self::poll_request) afterwards: requests held back may now go.
    pub fn consume(&mut self, n: usize, stats: &mut HttpStats) {
        let o = &mut self.output;
        let n = n.min(o.out.len());
        o.out.consume(n);
        stats.bytes_out += n as u64;
        if !o.out.is_empty() {
            // A transport that holds unacknowledged bytes (our TCP engine) drains slowly:
            // keep a streamed body flowing once half the high-water mark is gone.
            if o.stream.is_some() && o.out.len() < o.high_water / 2 {
                o.pump_stream();
            }
            return;
        }
        o.out.clear(KEEP_BYTES);
        o.pump_stream();
        if o.idle() {
            if let Some(mark) = o.mark.take() {
                self.arena.rewind(mark);
            }
        }
    }

    /// False while the engine will not yield more requests (backpressure, a stream or an
    /// answer pending, or closing).
    pub fn wants_read(&self) -> bool {
        !self.output.blocked()
    }

    /// True when the transport should close: closing and everything sent.
    pub fn wants_close(&self) -> bool {
        self.output.closing && self.output.idle()
    }

    /// True once no more output will be queued: the transport may send FIN after it.
    pub fn finishing(&self) -> bool {
        self.output.closing && self.output.stream.is_none() && self.output.awaiting.is_none()
    }

    /// Received bytes held back because the engine is not reading (output above its
    /// high-water mark, a stream or an answer pending): a transport shrinks its window
    /// by this. Bytes of a request still arriving (a body larger than the window) do not
    /// count: they are waited for, and holding the window shut on them would stall the
    /// connection for good.
    pub fn buffered_input(&self) -> usize {
        if self.wants_read() {
            0
        } else {
            self.input.buf.len() - self.input.pos
        }
    }

    /// What the connection waits for from its client, with the number of requests
    /// yielded so far: the pair names one wait, so a deadline armed for one request's
    /// head is recognised as stale once that request is in and the next one trickles.
    pub fn waiting(&self) -> (Waiting, u64) {
        let inp = &self.input;
        let w = if self.output.closing {
            Waiting::Nothing
        } else if inp.pending.is_some() {
            Waiting::Body
        } else if inp.pos < inp.buf.len() && !self.output.blocked() {
            // Bytes of a request not yet complete (a complete one would have been yielded).
            Waiting::Head
        } else {
            Waiting::Nothing
        };
        (w, inp.next_id)
    }

    /// The client took too long with what [`waiting`](Self::waiting) named: the
    /// request is answered 408 Request Timeout (RFC 9110 §15.5.9) and the connection
    /// closes after it; what it had sent of the request is dropped.
    pub fn time_out(&mut self, what: Waiting, date: &DateCache, stats: &mut HttpStats) {
        let why = match what {
            Waiting::Nothing => return,
            Waiting::Head => {
                stats.head_timeouts += 1;
                "request head not received in time"
            }
            Waiting::Body => {
                stats.body_timeouts += 1;
                "request body not received in time"
            }
        };
        let inp = &mut self.input;
        input_reset(&mut inp.pos, inp.buf.len(), &mut inp.pending);
        inp.scan = HeadScan::default();
        let _ = self.output.reject(Reject(408, why), &self.arena, date, stats);
    }

    /// No request in progress and nothing to send.
    pub fn is_idle(&self) -> bool {
        self.input.pos == self.input.buf.len() && self.input.pending.is_none() && self.output.idle()
    }

    /// Graceful shutdown: answer what is in progress, then close.
    pub fn begin_drain(&mut self) {
        self.output.draining = true;
        if self.is_idle() {
            self.output.closing = true;
        }
    }

    /// The peer closed its sending side: answer what is buffered, then close.
    pub fn peer_closed(&mut self) {
        self.output.draining = true;
        if self.output.idle() {
            self.output.closing = true;
        }
    }

    /// The connection's arena.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }
}

/// An HTTP/1.x request with a minor version above 1 is served as HTTP/1.1 (RFC 9110
/// §2.5: a recipient treats a higher minor version as the highest it supports), by
/// rewriting the digit in the buffered request line (`line`, CRLF excluded) before it is
/// parsed.
fn newer_minor_as_11(line: &mut [u8]) {
    if let [.., b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] = line {
        if (b'2'..=b'9').contains(minor) {
            *minor = b'1';
        }
    }
}

/// Forgets the request being parsed and what follows it (its framing is lost).
fn input_reset(pos: &mut usize, len: usize, pending: &mut Option<Pending>) {
    *pos = len;
    *pending = None;
}

impl Output {
    fn idle(&self) -> bool {
        self.out.is_empty() && self.stream.is_none() && self.awaiting.is_none()
    }

    fn blocked(&self) -> bool {
        self.closing || self.stream.is_some() || self.awaiting.is_some() || self.out.len() >= self.high_water
    }

    /// Answers a request whose framing is lost, then closes; yields nothing.
    fn reject<'c>(
        &mut self,
        r: Reject,
        arena: &Arena,
        date: &DateCache,
        stats: &mut HttpStats,
    ) -> Option<(Incoming<'c>, Answer<'c>)> {
        stats.count_reject(r.0);
        let resp = Response::text(r.0, format!("{}\n", r.1));
        let to = ReplyTo { head: false, keep_alive: false, version: Version::Http11 };
        self.write(resp, to, arena, date, stats);
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn await_body(
        &mut self,
        pending: &mut Option<Pending>,
        head_len: usize,
        framing: Framing,
        headers: &[httparse::Header<'_>],
        version: Version,
        sent_continue: &mut bool,
        stats: &mut HttpStats,
    ) {
        if pending.is_none() {
            *pending = Some(Pending { head_len, framing, decoder: ChunkedDecoder::default() });
        }
        let expects_continue = headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue"));
        if expects_continue && version == Version::Http11 && !*sent_continue {
            self.out.push_copy(b"HTTP/1.1 100 Continue\r\n\r\n");
            stats.responses_by_class[1] += 1;
            *sent_continue = true;
        }
    }

    /// Serialises `resp` (a body the arena holds is queued by reference).
    fn write(&mut self, resp: Response<'_>, to: ReplyTo, arena: &Arena, date: &DateCache, stats: &mut HttpStats) {
        let ReplyTo { head, keep_alive, version } = to;
        let conn_header: Option<&[u8]> = match (keep_alive, version) {
            (false, _) => Some(b"close"),
            (true, Version::Http10) => Some(b"keep-alive"),
            (true, Version::Http11) => None,
        };
        self.out.append_inline(|v| write_head(v, &resp, date, conn_header));
        stats.responses_by_class[(resp.status / 100).min(5) as usize] += 1;
        if !keep_alive {
            self.closing = true;
        }
        if !head {
            match resp.body {
                super::Body::Empty => {}
                super::Body::Static(b) => stats.body_bytes_by_reference += self.out.push_static(b) as u64,
                super::Body::Slice(b) => stats.body_bytes_by_reference += self.out.push_body(b, arena) as u64,
                super::Body::Owned(b) => self.out.push_copy(&b),
                super::Body::Stream { len, source } => {
                    if len > 0 {
                        self.stream = Some(Stream { source, left: len });
                    }
                }
            }
        }
        self.pump_stream();
    }

    fn pump_stream(&mut self) {
        while let Some(s) = &mut self.stream {
            if self.out.len() >= self.high_water {
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

/// RFC 9112 §6.3 message framing, refusing anything ambiguous.
fn body_framing(headers: &[httparse::Header<'_>], version: Version, limits: &HttpLimits) -> Result<Framing, Reject> {
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    for h in headers {
        if eq_lower(h.name.as_bytes(), b"content-length") {
            for part in h.value.split(|&b| b == b',') {
                let v = parse_length(trim(part)).ok_or(Reject(400, "invalid Content-Length"))?;
                if length.is_some_and(|l| l != v) {
                    return Err(Reject(400, "conflicting Content-Length values"));
                }
                length = Some(v);
            }
        } else if eq_lower(h.name.as_bytes(), b"transfer-encoding") {
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

/// `a` equals `lower` ignoring ASCII case, where `lower` holds only lowercase letters,
/// digits and `-`, and `a` is a header name (a token) or a field value (no CR, no
/// controls below 0x20): then `b | 0x20 == l` holds only for `b == l` or, for a
/// letter, its capital, so whole 8-byte words can be compared at once.
#[inline]
fn eq_lower(a: &[u8], lower: &[u8]) -> bool {
    if a.len() != lower.len() {
        return false;
    }
    let (mut a, mut l) = (a, lower);
    while a.len() >= 8 {
        let (x, y) = (u64::from_le_bytes(a[..8].try_into().unwrap()), u64::from_le_bytes(l[..8].try_into().unwrap()));
        if x | 0x2020_2020_2020_2020 != y {
            return false;
        }
        (a, l) = (&a[8..], &l[8..]);
    }
    a.iter().zip(l).all(|(&b, &c)| b | 0x20 == c)
}

/// What the `Connection` and `Host` headers say, in one pass over the headers: whether
/// the connection stays open after this request, and whether Host is as RFC 9112 §3.2
/// wants it (exactly one in HTTP/1.1, at most one in 1.0). Names are compared only when
/// their length matches, and the common values (`keep-alive`, `close`) without splitting.
fn connection_and_host(headers: &[httparse::Header<'_>], version: Version) -> (bool, Result<(), &'static str>) {
    let (mut close, mut keep, mut hosts, mut bad_host) = (false, false, 0u32, false);
    for h in headers {
        match h.name.len() {
            4 if eq_lower(h.name.as_bytes(), b"host") => {
                hosts += 1;
                bad_host |= !valid_host(h.value);
            }
            10 if eq_lower(h.name.as_bytes(), b"connection") => {
                if eq_lower(h.value, b"keep-alive") {
                    keep = true;
                } else if eq_lower(h.value, b"close") {
                    close = true;
                } else {
                    for token in h.value.split(|&b| b == b',').map(trim) {
                        close |= token.eq_ignore_ascii_case(b"close");
                        keep |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
            }
            _ => {}
        }
    }
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    };
    let host = match hosts {
        0 if version == Version::Http11 => Err("HTTP/1.1 request without Host\n"),
        1 if bad_host => Err("invalid Host header\n"),
        0 | 1 => Ok(()),
        _ => Err("more than one Host header\n"),
    };
    (keep_alive, host)
}

/// The bytes a reg-name may hold (RFC 3986: unreserved, `%` of pct-encoded, sub-delims),
/// as a table: every request's Host goes through it (a byte search per byte cost ~400
/// instructions a request).
const REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// A Host value as RFC 9110 §7.2 allows it: `uri-host [ ":" port ]`, the host a
/// reg-name (unreserved, pct-encoded, sub-delims), an IPv4 address (a reg-name's subset)
/// or a bracketed IP literal; the port at most five digits, at most 65535. Empty is
/// allowed (a target without an authority).
fn valid_host(v: &[u8]) -> bool {
    if v.first() == Some(&b'[') {
        let Some(end) = memchr::memchr(b']', v) else { return false };
        let inner = &v[1..end];
        if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.' || b == b'v') {
            return false;
        }
        return match &v[end + 1..] {
            [] => true,
            [b':', port @ ..] => valid_port(port),
            _ => false,
        };
    }
    // One pass: every byte a reg-name's but one colon, which starts the port.
    let mut colon = None;
    for (i, &b) in v.iter().enumerate() {
        if !REG_NAME[usize::from(b)] {
            if b != b':' || colon.is_some() {
                return false;
            }
            colon = Some(i);
        }
    }
    match colon {
        None => true,
        // A port needs a host before it; an empty port after a host is allowed.
        Some(c) => valid_port(&v[c + 1..]) && (c > 0 || c + 1 == v.len()),
    }
}

/// A port as RFC 3986 allows it (any digits), here at most five and at most 65535;
/// empty is allowed.
fn valid_port(port: &[u8]) -> bool {
    port.is_empty()
        || (port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535)
}

/// Splits a request-target into (path, query). Accepts origin-form and absolute-form.
fn split_target(target: &str) -> Option<(&str, &str)> {
    let origin = if target.starts_with('/') {
        target
    } else {
        let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
        &rest[rest.find('/')?..]
    };
    // The query starts at the first '?'; a '#' ends the path (a client should not send a
    // fragment, RFC 9112 §3.2, but one that does gets its path without it). One pass
    // over the bytes: targets are short, a searcher's set-up costs more than the scan.
    let b = origin.as_bytes();
    let Some(i) = b.iter().position(|&c| c == b'?' || c == b'#') else {
        return Some((origin, ""));
    };
    if b[i] == b'?' {
        return Some((&origin[..i], &origin[i + 1..]));
    }
    let query = b[i..].iter().position(|&c| c == b'?').map_or("", |j| &origin[i + j + 1..]);
    Some((&origin[..i], query))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_lower_matches_any_case_and_nothing_else() {
        for (a, want) in [
            (&b"Connection"[..], true),
            (b"CONNECTION", true),
            (b"connection", true),
            (b"connectioN", true),
            (b"connectio", false),
            (b"connections", false),
            (b"c0nnection", false),
            (b"connect-on", false),
        ] {
            assert_eq!(eq_lower(a, b"connection"), want, "{:?}", std::str::from_utf8(a));
        }
        assert!(eq_lower(b"Keep-Alive", b"keep-alive"));
        assert!(!eq_lower(b"keep alive", b"keep-alive"));
        assert!(eq_lower(b"Transfer-Encoding", b"transfer-encoding"));
        assert!(!eq_lower(b"Transfer_Encoding", b"transfer-encoding"));
        assert!(eq_lower(b"", b""));
    }

    #[test]
    fn targets_split_into_path_and_query_at_the_first_question_mark_and_lose_a_fragment() {
        assert_eq!(split_target("/plaintext"), Some(("/plaintext", "")));
        assert_eq!(split_target("/q?a=1&b=2"), Some(("/q", "a=1&b=2")));
        assert_eq!(split_target("/q?a=1#frag"), Some(("/q", "a=1#frag")));
        assert_eq!(split_target("/p#frag"), Some(("/p", "")));
        assert_eq!(split_target("/p#f?x=1"), Some(("/p", "x=1")));
        assert_eq!(split_target("http://h:80/x?y"), Some(("/x", "y")));
        assert_eq!(split_target("h/x"), None);
    }

    #[test]
    fn host_values_follow_rfc_9110() {
        for ok in
            ["", "t", "10.99.0.1:8080", "a-b.c_d~e%41!$&'()*+,;=", "h:65535", "[::1]", "[::1]:80", "[v1.a]", "h:", ":"]
        {
            assert!(valid_host(ok.as_bytes()), "{ok:?} refused");
        }
        for bad in [
            "a b", "a/b", "u@h", "<x>", "a:80x", "h:65536", "h:99999", "h:123456", "[::1", "[::1]x", ":80", "h\u{7f}",
            "a:b:80", "::80", "[::1]:8x",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?} accepted");
        }
        assert!(!valid_host(b"h\xc3\xa9"), "a byte above ASCII accepted");
        // The table holds exactly the reg-name bytes.
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
            assert_eq!(REG_NAME[usize::from(b)], want, "byte {b}");
        }
    }
}
