//! Harnesses for the fuzz targets in fuzz/ (libFuzzer) and for seeded property tests
//! that run in every test run:
//! - [`FrameHarness`]: arbitrary frames through the receive path (Ethernet → IPv4 or
//!   IPv6 → TCP engine with an echoing application), as the AF_XDP loop does.
//!   Contract: no input panics, and state stays bounded.
//! - [`HttpHarness`]: the HTTP engine driven by a script (bytes arriving in pieces, the
//!   transport taking part of the output, deadlines passing, deferred answers, the peer
//!   closing). Contract: no input panics, and what the client receives is always a
//!   sequence of well-formed responses, one per request in order, then at most one
//!   refusal that closes the connection.
//! - [`StackHarness`]: the whole packet path end to end (frames → network layer → TCP →
//!   HTTP → handlers → TCP → frames) under a scripted client TCP that misbehaves.
//!   Contract: every frame sent is well formed with correct checksums, every connection
//!   carries well-formed responses, and nothing is held once the clients are gone.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{TcpPacket, TcpRepr};

use crate::http::{header_slots, Body, DateCache, HttpConn, HttpLimits, HttpStats, Incoming, Method, ReqId, Response};
use crate::mem::{ChunkPool, HugepagePolicy, Region, HUGEPAGE_BYTES};
use crate::net::{FrameBatch, NetConfig, NetStack};
use crate::tcp::{ConnId, Engine, Segment, TcpApp, TcpConfig};

mod stack;
pub use stack::StackHarness;

/// Echoes what it receives; finishes when the peer does.
#[derive(Default)]
pub struct Echo {
    queue: Vec<u8>,
    done: bool,
}

impl TcpApp<()> for Echo {
    fn open(_: ConnId, _: &mut ()) -> Self {
        Echo::default()
    }
    fn received(&mut self, data: &[u8], _: ConnId, _: &mut ()) {
        if self.queue.len() < 1 << 20 {
            self.queue.extend_from_slice(data);
        }
    }
    fn peer_closed(&mut self, _: ConnId, _: &mut ()) {
        self.done = true;
    }
    fn send_queue(&self) -> &dyn crate::tcp::SendQueue {
        &self.queue
    }
    fn acked(&mut self, n: usize, _: ConnId, _: &mut ()) {
        self.queue.drain(..n.min(self.queue.len()));
    }
    fn finishing(&self) -> bool {
        self.done
    }
    fn buffered(&self) -> usize {
        0
    }
}

/// Our MAC and address in the harness.
pub const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// Our IPv4 address in the harness.
pub const IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// Our IPv6 address in the harness (frames of both families reach the engine).
pub const IP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1);
/// Connections the harness allows at once (the bound the fuzzer checks).
pub const MAX_CONNECTIONS: usize = 256;

/// The receive path with a clock that advances as frames arrive.
pub struct FrameHarness {
    net: NetStack,
    engine: Engine<Echo, ()>,
    out: FrameBatch,
    now: Instant,
    frames: u64,
}

impl Default for FrameHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameHarness {
    /// A fresh harness listening on port 8080.
    pub fn new() -> Self {
        let now = Instant::now();
        let cfg = TcpConfig { max_connections: MAX_CONNECTIONS, syn_backlog: 64, ..TcpConfig::default() };
        let mut engine = Engine::new(cfg, now, 1);
        engine.listen(8080);
        let net = NetStack::new(
            NetConfig { mac: MAC, ip: IP, prefix_len: 24, gateway: None, ip6: Some((IP6, 64)), gateway6: None },
            Arc::default(),
        );
        FrameHarness { net, engine, out: FrameBatch::default(), now, frames: 0 }
    }

    /// Feeds one frame; every 8 frames the clock moves on by `tick_ms` and timers run.
    pub fn feed(&mut self, frame: &[u8], tick_ms: u64) {
        let FrameHarness { net, engine, out, now, .. } = self;
        if let Some(t) = net.on_frame(frame, *now, out) {
            let bytes = &frame[t.start..t.start + t.len];
            let packet = TcpPacket::new_unchecked(bytes);
            if let Ok(repr) = TcpRepr::parse(&packet, &t.src.into(), &t.dst.into(), &ChecksumCapabilities::ignored()) {
                let seg = Segment::from_repr(&repr);
                engine.on_segment(*now, t.dst, t.src, &seg, &mut (), &mut |_| {});
            }
        }
        self.frames += 1;
        if self.frames.is_multiple_of(8) {
            self.now += Duration::from_millis(tick_ms);
            self.engine.poll(self.now, &mut (), &mut |_| {});
            self.net.poll(self.now, &mut self.out);
        }
        self.out.clear();
    }

    /// Runs the `tcp_frames` input format: frames, each prefixed by a 2-byte
    /// little-endian length (mod 1600); the prefix's second byte also sets how far the
    /// clock moves (mod 64 ms).
    ///
    /// # Panics
    /// When the connection bound is broken (or the receive path panics).
    pub fn run(data: &[u8]) {
        let mut h = FrameHarness::new();
        let mut rest = data;
        while rest.len() >= 2 {
            let len = u16::from_le_bytes([rest[0], rest[1]]) as usize % 1600;
            let tick = u64::from(rest[1] % 64);
            rest = &rest[2..];
            let frame = &rest[..len.min(rest.len())];
            h.feed(frame, tick);
            rest = &rest[frame.len()..];
            assert!(h.connections() <= MAX_CONNECTIONS);
        }
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.engine.connections()
    }

    /// Frames that reached the TCP engine.
    pub fn tcp_segments(&self) -> u64 {
        self.net.counters().tcp_segments
    }
}

/// A response head the harnesses read: its length, status, Content-Length (0 for a
/// 1xx) and whether it closes the connection.
pub(crate) struct Head {
    pub len: usize,
    pub status: u16,
    pub content_length: usize,
    pub closes: bool,
}

/// The response head at the start of `buf`: `Ok(None)` while it is incomplete, `Err`
/// with what is wrong when it is malformed.
///
/// # Panics
/// On a status outside 100..600 or a final response without a numeric Content-Length
/// (the engine always sends one).
pub(crate) fn response_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut hs = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut hs);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("{e:?}: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(200)]))),
    };
    let status = r.code.expect("a status");
    assert!((100..600).contains(&status), "status {status}");
    let header = |name: &str| r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let content_length = if status < 200 {
        0
    } else {
        std::str::from_utf8(header("content-length").expect("Content-Length"))
            .ok()
            .and_then(|v| v.parse().ok())
            .expect("a numeric Content-Length")
    };
    Ok(Some(Head { len, status, content_length, closes: header("connection") == Some(&b"close"[..]) }))
}

/// A body larger than the output high-water mark, to exercise backpressure.
static BIG: [u8; 20_000] = [b'b'; 20_000];

thread_local! {
    /// One arena pool per thread: an iteration's connection returns its chunks to it.
    static POOL: Rc<ChunkPool> = Rc::new(ChunkPool::new(
        Region::map(4 * HUGEPAGE_BYTES, None, HugepagePolicy::Off).expect("mmap for the arena pool"),
        64 << 10,
    ));
}

/// The HTTP engine under a script; see the module doc.
pub struct HttpHarness {
    conn: HttpConn,
    limits: HttpLimits,
    date: DateCache,
    stats: HttpStats,
    /// Everything the transport took, as the client would read it.
    out: Vec<u8>,
    /// Per request yielded, in order: was it HEAD (its response has no body).
    yielded: Vec<bool>,
    deferred: Option<ReqId>,
}

impl Default for HttpHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpHarness {
    /// A fresh connection with small limits, so the fuzzer reaches them.
    pub fn new() -> Self {
        let limits = HttpLimits {
            max_uri_bytes: 256,
            max_header_line_bytes: 512,
            max_head_bytes: 2048,
            max_headers: 16,
            max_body_bytes: 4096,
            max_trailer_bytes: 256,
            max_trailers: 4,
            output_high_water_bytes: 16 << 10,
            ..HttpLimits::default()
        };
        let arena = crate::mem::Arena::new(POOL.with(Rc::clone), 1 << 20);
        let mut date = DateCache::default();
        date.update(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        HttpHarness {
            conn: HttpConn::new(arena, &limits),
            limits,
            date,
            stats: HttpStats::default(),
            out: Vec::new(),
            yielded: Vec::new(),
            deferred: None,
        }
    }

    /// Runs a whole script, then drains everything and checks what the client got.
    ///
    /// # Panics
    /// When the contract is broken (that is what the fuzzer looks for).
    pub fn run(script: &[u8]) {
        let mut h = HttpHarness::new();
        let mut rest = script;
        while let [op, arg, tail @ ..] = rest {
            rest = tail;
            match op % 8 {
                0..=3 => {
                    let n = (usize::from(*arg) + 1).min(rest.len());
                    h.conn.receive(&rest[..n], &mut h.stats);
                    rest = &rest[n..];
                }
                4 => h.take(usize::from(*arg) * 64 + 1),
                5 => {
                    let (what, _) = h.conn.waiting();
                    h.conn.time_out(what, &h.date, &mut h.stats);
                }
                6 => h.answer_deferred(),
                _ => h.conn.peer_closed(),
            }
            h.serve();
        }
        // The end: every deferred answer given, all output taken.
        for _ in 0..1000 {
            h.answer_deferred();
            h.serve();
            if h.conn.output_len() == 0 && h.deferred.is_none() {
                break;
            }
            h.take(usize::MAX);
        }
        h.check();
    }

    fn take(&mut self, n: usize) {
        let n = n.min(self.conn.output_len());
        let at = self.out.len();
        self.out.resize(at + n, 0);
        self.conn.copy_output(0, &mut self.out[at..]);
        self.conn.consume(n, &mut self.stats);
    }

    fn answer_deferred(&mut self) {
        if let Some(id) = self.deferred.take() {
            let resp = Response::text(200, "answered later\n");
            assert!(self.conn.respond(id, resp, false, &self.date, &mut self.stats), "the awaited request");
        }
    }

    /// Answers every request the engine yields, from what it parsed.
    fn serve(&mut self) {
        loop {
            let mut slots = header_slots();
            let Some((incoming, answer)) =
                self.conn.poll_request(&mut slots, &self.limits, &self.date, &mut self.stats)
            else {
                return;
            };
            match incoming {
                Incoming::Invalid(resp) => {
                    self.yielded.push(answer.head_only());
                    answer.send(resp);
                }
                Incoming::Request(req) => {
                    self.yielded.push(req.method() == Method::Head);
                    if req.path().starts_with("/defer") && self.deferred.is_none() {
                        self.deferred = Some(answer.defer());
                    } else if req.path().starts_with("/big") {
                        answer.send(Response::new(200, "application/octet-stream", Body::Static(&BIG)));
                    } else {
                        let summary = format!(
                            "{} {} {} {} {}\n",
                            req.method().as_str(),
                            req.path().len(),
                            req.query_string().len(),
                            req.headers().len(),
                            req.body().len()
                        );
                        let mut body = summary.into_bytes();
                        body.extend_from_slice(req.body());
                        answer.send(Response::text(200, body));
                    }
                }
            }
        }
    }

    /// What the client received: the responses to the yielded requests, in order, then
    /// at most one refusal with `Connection: close`, then nothing.
    fn check(&self) {
        let mut buf = &self.out[..];
        let mut answered = 0;
        let mut closed = false;
        while !buf.is_empty() {
            assert!(!closed, "bytes after a response that closed the connection");
            let h = match response_head(buf) {
                Ok(Some(h)) => h,
                Ok(None) => panic!("unfinished response: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(200)])),
                Err(e) => panic!("malformed response: {e}"),
            };
            let (n, status, len) = (h.len, h.status, h.content_length);
            if status == 100 {
                buf = &buf[n..];
                continue;
            }
            let head = match self.yielded.get(answered) {
                Some(&head) => head,
                None => {
                    // Past the yielded requests: only the engine's own refusal.
                    assert!(status >= 400, "an unasked-for {status}");
                    false
                }
            };
            answered += 1;
            closed = h.closes;
            let body = if head { 0 } else { len };
            assert!(buf.len() >= n + body, "response cut short");
            buf = &buf[n + body..];
        }
        assert!(answered >= self.yielded.len(), "{} requests yielded, {answered} answered", self.yielded.len());
        assert!(answered <= self.yielded.len() + 1, "more than one refusal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::*;

    /// A valid TCP frame from a peer (IPv4 or IPv6), to mutate.
    fn frame_of(v6: bool, port: u16, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
        let caps = ChecksumCapabilities::default();
        let tcp =
            Segment { src_port: port, dst_port: 8080, seq, ack, syn, window: 65535, payload, ..Default::default() }
                .to_repr();
        let (peer, us, ethertype, ip_len): (IpAddress, IpAddress, _, _) = if v6 {
            (Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 2).into(), IP6.into(), EthernetProtocol::Ipv6, 40)
        } else {
            (Ipv4Addr::new(10, 99, 0, 2).into(), IP.into(), EthernetProtocol::Ipv4, 20)
        };
        let eth =
            EthernetRepr { src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]), dst_addr: EthernetAddress(MAC), ethertype };
        let mut buf = vec![0; 14 + ip_len + tcp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let ip_buf = f.payload_mut();
        match (peer, us) {
            (IpAddress::Ipv4(src_addr), IpAddress::Ipv4(dst_addr)) => {
                let ip = Ipv4Repr {
                    src_addr,
                    dst_addr,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp.buffer_len(),
                    hop_limit: 64,
                };
                ip.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_buf), &caps);
            }
            (IpAddress::Ipv6(src_addr), IpAddress::Ipv6(dst_addr)) => {
                let ip = Ipv6Repr {
                    src_addr,
                    dst_addr,
                    next_header: IpProtocol::Tcp,
                    payload_len: tcp.buffer_len(),
                    hop_limit: 64,
                };
                ip.emit(&mut Ipv6Packet::new_unchecked(&mut *ip_buf));
            }
            _ => unreachable!("one family"),
        }
        tcp.emit(&mut TcpPacket::new_unchecked(&mut ip_buf[ip_len..]), &peer, &us, &caps);
        buf
    }

    /// A seeded xorshift64 generator.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn arbitrary_frames_through_the_tcp_path() {
        let mut h = FrameHarness::new();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for i in 0..30_000u32 {
            let r = next();
            let port = 40_000 + (r % 600) as u16;
            let mut f = frame_of(
                i % 2 == 1,
                port,
                1000 + (next() % 4000) as u32,
                (r & 1 == 0).then(|| next() as u32),
                r & 2 == 0,
                &vec![b'q'; (next() % 300) as usize],
            );
            if i % 3 == 0 {
                let flips = 1 + next() % 3;
                for _ in 0..flips {
                    let at = (next() as usize) % f.len();
                    f[at] = next() as u8;
                }
            }
            h.feed(&f, next() % 50);
            assert!(h.connections() <= MAX_CONNECTIONS);
        }
        assert!(h.tcp_segments() > 10_000, "most frames reached the engine");
    }

    /// Scripts built from request fragments, valid and not, cut at random places, with
    /// the transport, the clock and the peer acting in between: the HTTP harness's
    /// contract holds for each.
    #[test]
    fn scripted_http_through_the_engine() {
        let pieces: [&[u8]; 14] = [
            b"GET /a?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
            b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            b"GET /defer HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
            b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
            b"BREW /x HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET /x HTTP/1.1\nHost: t\n\n",
            b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 9999\r\n\r\n",
            b"\r\n",
        ];
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut wire = Vec::new();
            for _ in 0..1 + next() % 6 {
                wire.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            if next().is_multiple_of(4) {
                let at = (next() as usize) % wire.len();
                wire[at] = next() as u8;
            }
            let mut script = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let n = (1 + next() % 64) as usize;
                let n = n.min(wire.len() - at);
                script.extend_from_slice(&[0, (n - 1) as u8]);
                script.extend_from_slice(&wire[at..at + n]);
                at += n;
                match next() % 10 {
                    0 => script.extend_from_slice(&[4, (next() % 8) as u8]),
                    1 => script.extend_from_slice(&[6, 0]),
                    2 if next().is_multiple_of(8) => script.extend_from_slice(&[5, 0]),
                    3 if next().is_multiple_of(16) => script.extend_from_slice(&[7, 0]),
                    _ => {}
                }
            }
            if std::panic::catch_unwind(|| HttpHarness::run(&script)).is_err() {
                panic!("script {:?}", String::from_utf8_lossy(&script));
            }
        }
    }

    /// Script operations for [`StackHarness`] (see `StackHarness::run`).
    fn data_op(script: &mut Vec<u8>, op: u8, bytes: &[u8]) {
        for piece in bytes.chunks(256) {
            script.extend_from_slice(&[op, (piece.len() - 1) as u8]);
            script.extend_from_slice(piece);
        }
    }

    const REQUESTS: [&[u8]; 9] = [
        b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /sleep/120 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /teapot HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /sleep/9000 HTTP/1.1\r\nHost: t\r\n\r\n",
    ];

    /// Every kind of answer, pipelined on one connection, reaches the client whole.
    #[test]
    fn the_whole_packet_path_answers_pipelined_requests() {
        let mut script = vec![0, 0x17];
        let wire: Vec<u8> = REQUESTS.concat();
        data_op(&mut script, 1, &wire);
        let h = StackHarness::run(&script);
        assert_eq!(h.responses, REQUESTS.len() as u64, "one response per request");
        assert!(h.frames_from_server > 20, "the big and streamed bodies took many frames ({})", h.frames_from_server);
    }

    /// The same under loss of the server's frames, a reordered request, a zero window
    /// for a while, and a reset with a wrong sequence number (which must not close it).
    #[test]
    fn the_whole_packet_path_recovers_from_loss_and_reordering() {
        let mut script = vec![0, 0x13];
        data_op(&mut script, 5, REQUESTS[1]); // held back
        data_op(&mut script, 1, REQUESTS[0]); // arrives first
        script.extend_from_slice(&[7, 0]); // then the held one
        script.extend_from_slice(&[12, 3, 11, 20, 8, 0, 11, 200, 8, 3, 10, 9, 11, 100]);
        data_op(&mut script, 1, REQUESTS[2]);
        script.extend_from_slice(&[12, 5, 11, 250, 11, 250]);
        let h = StackHarness::run(&script);
        assert_eq!(h.responses, 3, "every request answered once, whatever was lost");
    }

    /// Every input committed under fuzz/corpus (seeds, what the fuzzer kept, the cases
    /// that once crashed it) through its harness: the short seeded runs of all three
    /// targets, in every `cargo test`.
    #[test]
    fn the_committed_corpora_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        type Harness = fn(&[u8]);
        let run: [(&str, Harness); 3] = [
            ("tcp_frames", FrameHarness::run),
            ("http_bytes", HttpHarness::run),
            ("stack_http", |d| {
                StackHarness::run(d);
            }),
        ];
        for (target, harness) in run {
            let dir = root.join(target);
            let mut n = 0;
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.expect("a directory entry").path();
                let data = std::fs::read(&path).expect("a corpus file");
                if std::panic::catch_unwind(|| harness(&data)).is_err() {
                    panic!("{} fails", path.display());
                }
                n += 1;
            }
            assert!(n >= 5, "{target}: only {n} committed inputs");
        }
    }

    /// A request that arrives just before the idle timer fires, to a handler that waits:
    /// the idle close waits for the answer (the fuzz harness found the FIN sent first and
    /// the answer after it, over the FIN's sequence number).
    #[test]
    fn the_idle_close_waits_for_a_handler_that_waits() {
        let mut script = vec![0, 0x17, 11, 255];
        for _ in 0..11 {
            script.extend_from_slice(&[11, 250]); // 57.5 s in all
        }
        script.extend_from_slice(&[11, 249]); // 59.99 s
        data_op(&mut script, 1, REQUESTS[3]); // sleeps 120 ms
        let h = StackHarness::run(&script);
        assert_eq!(h.responses, 1);
    }

    /// Seeded scripts over several connections: requests valid and not, cut anywhere,
    /// with losses, reordering, windows, resets, FINs, mutated frames and time passing.
    #[test]
    fn scripted_clients_through_the_whole_packet_path() {
        let mut next = xorshift(0x5851_f42d_4c95_7f2d);
        let mut answered = 0;
        for _ in 0..1000 {
            let mut script = Vec::new();
            for _ in 0..1 + next() % 24 {
                let r = next();
                match r % 12 {
                    0 => script.extend_from_slice(&[14, (next() % 4) as u8, 0, next() as u8]),
                    1..=5 => {
                        let mut wire = REQUESTS[(next() % REQUESTS.len() as u64) as usize].to_vec();
                        if next().is_multiple_of(6) {
                            let at = (next() as usize) % wire.len();
                            wire[at] = next() as u8;
                        }
                        let cut = (next() as usize) % wire.len();
                        data_op(&mut script, if r.is_multiple_of(5) { 5 } else { 1 }, &wire[..cut.max(1)]);
                        if cut > 0 {
                            data_op(&mut script, 2, &wire[cut..]);
                        }
                    }
                    6 => script.extend_from_slice(&[12, next() as u8]),
                    7 => script.extend_from_slice(&[7, 0, 6, next() as u8]),
                    8 => script.extend_from_slice(&[8, next() as u8]),
                    9 => script.extend_from_slice(&[11, (next() % 64) as u8]),
                    10 => script.extend_from_slice(&[13, next() as u8, next() as u8]),
                    _ => script.extend_from_slice(&[[9, 10, 15][(next() % 3) as usize], (next() % 4) as u8]),
                }
            }
            let h = match std::panic::catch_unwind(|| StackHarness::run(&script)) {
                Ok(h) => h,
                Err(_) => panic!("script {script:?}"),
            };
            answered += h.responses;
        }
        assert!(answered > 300, "most scripts got answers ({answered})");
    }
}
