//! The whole packet path under a scripted, misbehaving client: frames → network layer →
//! TCP engine → HTTP engine → handlers (sync, streaming, async with timers) → responses
//! → TCP → frames, one core's loop turning as [`crate::runtime::turn`] does, on a
//! virtual clock. The client is a small TCP of its own, driven by the script: it opens
//! connections with chosen options, sends request bytes in order, out of order, twice or
//! never, withholds or fakes ACKs (zero windows, SACK blocks), closes, resets with good
//! and bad sequence numbers, loses the server's frames, and sends frames it mutated.
//!
//! Contract checked ([`StackHarness::run`] panics when broken):
//! - every frame the server sends is well formed: Ethernet to the client, ARP, or IPv4
//!   with correct header and TCP/ICMP checksums, within the MTU;
//! - on each connection, the bytes the client received in order are a sequence of
//!   well-formed HTTP responses; complete unless the connection was reset; nothing after
//!   a response that said `Connection: close`, and the server's FIN after it;
//! - when every client has gone away and time has passed, the core holds no connection
//!   and every arena chunk is back in the pool (nothing leaks).

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    TcpTimestampRepr,
};

use crate::app::{
    AppSet, ControlPlane, Ctx, Cx, Dispatch, DispatchConfig, HandlerError, HandlerFuture, OwnedRequest, Reply, Route,
    Router, Shared,
};
use crate::http::{Body, BodySource, HttpLimits, Method, Request, Response};
use crate::mem::{ChunkPool, HugepagePolicy, Region, HUGEPAGE_BYTES};
use crate::net::{NetConfig, NetStack};
use crate::nic::loopback::Loopback;
use crate::nic::PacketIo;
use crate::tcp::TcpConfig;
use crate::transport::stack::{Polling, StackTransport};
use crate::transport::Transport;

const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const PORT: u16 = 8080;
/// Client connections the script can drive at once.
const PEERS: usize = 4;
/// The most of a connection's response bytes the client keeps to check.
const STREAM_CAP: usize = 2 << 20;
/// The wall clock when a harness begins (seconds since the epoch).
const WALL_START_SECS: u64 = 1_700_000_000;
/// A static body larger than a window, to exercise backpressure.
static BIG: [u8; 6_000] = [b'b'; 6_000];

fn hello<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::ok("text/plain", b"hello\n").into())
}

fn echo<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    // The prefix keeps a body from ever starting like a status line (see `check_stream`).
    let out = cx.arena().alloc_bytes(5 + req.body().len())?;
    out[..5].copy_from_slice(b"echo:");
    out[5..].copy_from_slice(req.body());
    Ok(Response::ok("application/octet-stream", out).into())
}

fn big<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::new(200, "application/octet-stream", Body::Static(&BIG)).into())
}

/// A streamed body of 20,000 bytes, produced as the transport takes it.
fn stream<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    struct Digits(u64);
    impl BodySource for Digits {
        fn fill(&mut self, out: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
            for _ in 0..max {
                out.push(b'0' + (self.0 % 10) as u8);
                self.0 += 1;
            }
            Ok(max)
        }
    }
    Ok(Response::new(200, "text/plain", Body::Stream { len: 20_000, source: Box::new(Digits(0)) }).into())
}

fn teapot<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Err(HandlerError::status(418, "short and stout"))
}

/// Sleeps the milliseconds its path names (at most 10 s; the deadline is 5 s), then answers.
fn sleep(req: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(async move {
        let ms: u64 = req.param("ms").and_then(|s| s.parse().ok()).unwrap_or(0).min(10_000);
        cx.sleep(Duration::from_millis(ms)).await;
        Ok(Response::text(200, format!("slept {ms}\n")))
    })
}

/// What every iteration on a thread shares: the control thread, the apps, the arena pool.
struct Fixture {
    plane: ControlPlane,
    apps: Arc<AppSet>,
    pool: Rc<ChunkPool>,
}

thread_local! {
    static FIXTURE: Fixture = {
        let mut router = Router::new();
        for route in [
            Route::sync(Method::Get, "/hello", hello),
            Route::sync(Method::Post, "/echo", echo),
            Route::sync(Method::Get, "/big", big),
            Route::sync(Method::Get, "/stream", stream),
            Route::sync(Method::Get, "/teapot", teapot),
            Route::asynchronous(Method::Get, "/sleep/{ms}", sleep),
        ] {
            router.add(route).expect("the harness's routes");
        }
        Fixture {
            plane: ControlPlane::start(8).expect("control plane"),
            apps: Arc::new(AppSet::new(router, Shared::default())),
            pool: Rc::new(ChunkPool::new(
                Region::map(4 * HUGEPAGE_BYTES, None, HugepagePolicy::Off).expect("mmap for the arena pool"),
                64 << 10,
            )),
        }
    };
}

/// One client connection, as the client's own small TCP sees it.
#[derive(Default)]
struct Peer {
    port: u16,
    /// SYN sent.
    open: bool,
    established: bool,
    reset: bool,
    isn: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// Our FIN's sequence number, once sent.
    fin_seq: Option<u32>,
    rcv_nxt: u32,
    fin_rcvd: bool,
    /// The sequence number of the server's FIN, once seen.
    server_fin: Option<u32>,
    timestamps: bool,
    ts_recent: u32,
    window: u16,
    hold_acks: bool,
    need_ack: bool,
    /// Everything sent after the SYN (byte i is sequence isn + 1 + i), for retransmission.
    sent: Vec<u8>,
    /// What the server sent, in order (up to [`STREAM_CAP`]).
    stream: Vec<u8>,
    /// The stream was cut at the cap (only its prefix is checked).
    truncated: bool,
    /// A mutated frame went out on this connection: the client may have desynchronised
    /// its own sequence space (sent bytes it does not remember, acknowledged what it
    /// never got), so the server may rightly stop making progress; only a prefix of
    /// well-formed responses is required.
    tainted: bool,
    /// The server reset the connection, and the client lost that RST (op 12): the
    /// server rightly forgets it, and what the client sends after is dropped in silence
    /// (an ACK to a listener that matches no SYN cookie), so the response may stay cut.
    reset_lost: bool,
}

/// See the module doc.
pub struct StackHarness {
    t: StackTransport<Loopback>,
    d: Dispatch,
    link: Loopback,
    now: Instant,
    wall: SystemTime,
    peers: [Peer; PEERS],
    generation: u16,
    cur: usize,
    /// The last frame the client sent (to mutate or repeat).
    last: Vec<u8>,
    /// Frames held back, to arrive later out of order.
    delayed: Vec<Vec<u8>>,
    /// Frames the server sent.
    pub frames_from_server: u64,
    /// Responses the client received complete (all connections).
    pub responses: u64,
    /// Print every TCP segment both ways (to read a failing case).
    trace: bool,
}

impl StackHarness {
    fn new() -> Self {
        let (plane, apps, pool) = FIXTURE.with(|f| (f.plane.handle(), f.apps.clone(), f.pool.clone()));
        let limits = HttpLimits {
            max_head_bytes: 2048,
            max_body_bytes: 8192,
            output_high_water_bytes: 32 << 10,
            ..HttpLimits::default()
        };
        let cfg = DispatchConfig {
            limits,
            arena_cap: 1 << 20,
            deadline: Duration::from_secs(5),
            max_in_flight: 8,
            file_reads: 64,
        };
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(WALL_START_SECS);
        let now = Instant::now();
        let mut d = Dispatch::new(apps, cfg, pool, plane);
        d.tick(wall, now);
        let (server_io, link) = Loopback::pair(256);
        let net = NetStack::new(
            NetConfig { mac: SERVER_MAC, ip: SERVER_IP, prefix_len: 24, gateway: None, ip6: None, gateway6: None },
            Arc::default(),
        );
        let poll = Polling {
            rx_batch: 16,
            idle_spin: Duration::ZERO,
            idle_sleep: Duration::ZERO,
            wake_cost: None,
            busy_poll_below: Duration::ZERO,
        };
        let tcp = TcpConfig {
            max_connections: 64,
            syn_backlog: 16,
            data_retries: 6,
            rto_max_ms: 10_000,
            ..TcpConfig::default()
        };
        let t = StackTransport::new(server_io, net, poll, tcp, Some(PORT), 7);
        let mut h = StackHarness {
            t,
            d,
            link,
            now,
            wall,
            peers: Default::default(),
            generation: 0,
            cur: 0,
            last: Vec::new(),
            delayed: Vec::new(),
            frames_from_server: 0,
            responses: 0,
            trace: std::env::var_os("PX_STACK_TRACE").is_some(),
        };
        h.arp_request();
        h.step(0);
        h
    }

    /// Runs a whole script (two bytes per operation, some followed by data), then lets
    /// every connection finish, checks what each client received, closes them all and
    /// checks that nothing is left.
    ///
    /// # Panics
    /// When the contract in the module doc is broken.
    pub fn run(script: &[u8]) -> StackHarness {
        let mut h = StackHarness::new();
        let mut rest = script;
        while let [op, arg, tail @ ..] = rest {
            rest = tail;
            let arg = *arg;
            match op % 16 {
                0 => h.connect(arg),
                1..=4 => {
                    let n = (usize::from(arg) + 1).min(rest.len());
                    h.send_data(&rest[..n], false);
                    rest = &rest[n..];
                }
                5 => {
                    let n = (usize::from(arg) + 1).min(rest.len());
                    h.send_data(&rest[..n], true);
                    rest = &rest[n..];
                }
                6 => h.retransmit(usize::from(arg) * 8),
                7 => {
                    let delayed = std::mem::take(&mut h.delayed);
                    for f in delayed.iter().rev() {
                        h.put(f.clone());
                    }
                }
                8 => h.ack(arg),
                9 => h.fin(),
                10 => h.rst(arg),
                11 => h.step(if arg == 255 { 30_000 } else { u64::from(arg) * 10 }),
                12 => h.lose(usize::from(arg % 16) + 1),
                13 => {
                    let Some((&value, tail)) = rest.split_first() else { break };
                    rest = tail;
                    h.mutate(arg, value);
                }
                14 => h.cur = usize::from(arg) % PEERS,
                _ => {
                    if arg & 1 == 0 {
                        h.ping(arg);
                    } else {
                        h.arp_request();
                    }
                }
            }
            h.step(0);
        }
        h.finish();
        h
    }

    /// The clock moves on; then the client's frames in, a turn of the server's loop, the
    /// server's frames out, up to `turns` times or until both sides are quiet.
    fn step(&mut self, advance_ms: u64) {
        self.step_for(advance_ms, 4);
    }

    fn step_for(&mut self, advance_ms: u64, turns: usize) {
        self.now += Duration::from_millis(advance_ms);
        self.wall += Duration::from_millis(advance_ms);
        for _ in 0..turns {
            self.d.tick(self.wall, self.now);
            let work = crate::runtime::turn(&mut self.t, &mut self.d, self.now);
            let got = self.drain();
            if work == 0 && got == 0 {
                break;
            }
        }
    }

    /// Lets every connection finish on a clock that keeps moving, the client
    /// retransmitting what the server has not acknowledged; then checks each stream,
    /// resets every connection, waits, and checks that nothing is held.
    fn finish(&mut self) {
        for f in std::mem::take(&mut self.delayed) {
            self.put(f);
        }
        for p in &mut self.peers {
            p.hold_acks = false;
            p.window = u16::MAX;
            p.need_ack = true;
        }
        // 10 ms doubling to 5 s, then 5 s steps: 80 s in all, past every HTTP deadline.
        let mut step = 10;
        for round in 0..26 {
            for i in 0..PEERS {
                self.cur = i;
                if round % 2 == 0 {
                    self.retransmit(usize::MAX);
                }
                self.send_acks();
            }
            self.step_for(step, 1000);
            step = (step * 2).min(5_000);
        }
        for i in 0..PEERS {
            self.check_stream(i);
        }
        for i in 0..PEERS {
            self.cur = i;
            if self.peers[i].open && !self.peers[i].reset {
                self.rst(0);
            }
        }
        for _ in 0..10 {
            self.step(30_000);
        }
        assert_eq!(
            self.t.active(),
            0,
            "connections left after every client went away: {:?}, {:?}",
            self.t.describe_connections(),
            self.t.report().stack.map(|s| s.tcp)
        );
        let pool = FIXTURE.with(|f| f.pool.stats());
        assert_eq!(pool.chunks_free, pool.chunks_total, "arena chunks still held after every connection closed");
    }

    /// The bytes a connection received: complete well-formed responses, in order.
    fn check_stream(&mut self, i: usize) {
        let p = &self.peers[i];
        let mut buf = &p.stream[..];
        let mut closed = false;
        while !buf.is_empty() {
            assert!(!closed, "bytes after a response that closed the connection");
            let h = match super::response_head(buf) {
                Ok(Some(h)) => h,
                Ok(None) if p.reset || p.reset_lost || p.truncated || p.tainted => return,
                Ok(None) => panic!(
                    "connection {i}: unfinished response without a reset: {:?}; the server's connections: {:?}; {:?}",
                    String::from_utf8_lossy(&buf[..buf.len().min(200)]),
                    self.t.describe_connections(),
                    self.t.report().stack
                ),
                Err(e) => panic!("connection {i}: malformed response: {e}"),
            };
            let (n, len) = (h.len, h.content_length);
            if h.status == 100 {
                buf = &buf[n..];
                continue;
            }
            closed = h.closes;
            // A HEAD response has no body: the next response follows its head at once.
            let body = if status_line_at(&buf[n..]) || (buf.len() == n && len > 0 && !p.reset) { 0 } else { len };
            if buf.len() < n + body {
                assert!(
                    p.reset || p.reset_lost || p.truncated || p.tainted,
                    "connection {i}: response cut short without a reset"
                );
                return;
            }
            self.responses += 1;
            buf = &buf[n + body..];
        }
        if closed && !p.reset && !p.reset_lost && !p.truncated && !p.tainted {
            assert!(p.fin_rcvd, "connection {i}: no FIN after a response that closed the connection");
        }
    }

    // --- the client -------------------------------------------------------------------

    /// A new connection in the current slot; the one it held (if any) is abandoned, its
    /// server side left to time out.
    fn connect(&mut self, arg: u8) {
        self.generation = self.generation.wrapping_add(1);
        let i = self.cur;
        let isn = 1000u32.wrapping_add(u32::from(arg) << 24).wrapping_mul(7);
        self.peers[i] = Peer {
            port: 40_000 + (i as u16) * 4096 + self.generation % 4096,
            open: true,
            isn,
            snd_una: isn,
            snd_nxt: isn.wrapping_add(1),
            window: if arg & 0x40 != 0 { 512 } else { u16::MAX },
            timestamps: arg & 2 != 0,
            ..Peer::default()
        };
        let tcp = TcpRepr {
            src_port: self.peers[i].port,
            dst_port: PORT,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(isn as i32),
            ack_number: None,
            window_len: self.peers[i].window,
            window_scale: (arg & 1 != 0).then_some(arg >> 5),
            max_seg_size: (arg & 4 != 0).then_some(if arg & 8 != 0 { 536 } else { 1460 }),
            sack_permitted: arg & 16 != 0,
            sack_ranges: [None; 3],
            timestamp: (arg & 2 != 0).then_some(TcpTimestampRepr { tsval: self.now_ms(), tsecr: 0 }),
            payload: &[],
        };
        self.emit(&tcp);
    }

    /// Request bytes at the next sequence number, now or held back (to arrive after
    /// what is sent next).
    fn send_data(&mut self, data: &[u8], hold: bool) {
        let p = &mut self.peers[self.cur];
        if !p.established || p.reset || p.fin_seq.is_some() {
            return;
        }
        let seq = p.snd_nxt;
        p.snd_nxt = seq.wrapping_add(data.len() as u32);
        if p.sent.len() < 1 << 20 {
            p.sent.extend_from_slice(data);
        }
        let frame = self.segment(seq, TcpControl::Psh, data, None);
        if hold {
            self.delayed.push(frame);
        } else {
            self.put(frame);
        }
    }

    /// Sends again what the server has not acknowledged, from its start (at most `max`
    /// bytes; 0 sends one byte), and the FIN if it is unacknowledged.
    fn retransmit(&mut self, max: usize) {
        let p = &self.peers[self.cur];
        if !p.established || p.reset {
            return;
        }
        let base = p.isn.wrapping_add(1);
        let from = p.snd_una.wrapping_sub(base) as usize;
        let to = p.sent.len().min(from.saturating_add(max.max(1)));
        let mut at = from;
        let mut frames = Vec::new();
        while at < to {
            let end = (at + 1000).min(to);
            frames.push(self.segment(base.wrapping_add(at as u32), TcpControl::Psh, &p.sent[at..end], None));
            at = end;
        }
        if let Some(fin) = p.fin_seq {
            if to == p.sent.len() && seq_le(p.snd_una, fin) {
                frames.push(self.segment(fin, TcpControl::Fin, &[], None));
            }
        }
        for f in frames {
            self.put(f);
        }
    }

    /// A pure ACK: the low bits choose the window (zero, small, full), bit 3 whether the
    /// client stops acknowledging on its own, the high bits a SACK block beyond what it
    /// received.
    fn ack(&mut self, arg: u8) {
        let p = &mut self.peers[self.cur];
        if !p.established || p.reset {
            return;
        }
        p.window = match arg & 3 {
            0 => 0,
            1 => 700,
            _ => u16::MAX,
        };
        p.hold_acks = arg & 4 != 0;
        let sack = (arg >= 16).then(|| {
            let left = p.rcv_nxt.wrapping_add(u32::from(arg >> 4) * 536);
            (left, left.wrapping_add(536 * u32::from(1 + (arg & 8) / 8)))
        });
        let frame = self.segment(self.peers[self.cur].snd_nxt, TcpControl::None, &[], sack);
        self.put(frame);
        self.peers[self.cur].need_ack = false;
    }

    fn fin(&mut self) {
        let p = &mut self.peers[self.cur];
        if !p.established || p.reset || p.fin_seq.is_some() {
            return;
        }
        let seq = p.snd_nxt;
        p.fin_seq = Some(seq);
        p.snd_nxt = seq.wrapping_add(1);
        let frame = self.segment(seq, TcpControl::Fin, &[], None);
        self.put(frame);
    }

    /// A reset at the exact sequence number (arg 0), or off by an amount (RFC 5961: the
    /// server must then only send a challenge ACK).
    fn rst(&mut self, arg: u8) {
        let p = &mut self.peers[self.cur];
        if !p.open || p.reset {
            return;
        }
        let seq = p.snd_nxt.wrapping_add(u32::from(arg) * u32::from(arg) * 97);
        if arg == 0 {
            p.reset = true;
        }
        let frame = self.segment(seq, TcpControl::Rst, &[], None);
        self.put(frame);
    }

    /// The server's next frames are lost.
    fn lose(&mut self, n: usize) {
        let lost = RefCell::new(Vec::new());
        self.link.recv(self.now, n, &mut |f| lost.borrow_mut().push(f.to_vec()));
        for f in lost.into_inner() {
            if self.trace {
                self.print("lost", &f);
            }
            if let Some(port) = rst_to(&f) {
                self.peers.iter_mut().filter(|p| p.open && p.port == port).for_each(|p| p.reset_lost = true);
            }
        }
    }

    /// The last frame again, with byte `at` set to `value`; with the high bit of `at`,
    /// inside the TCP header and with the checksum made right again.
    fn mutate(&mut self, at: u8, value: u8) {
        let mut f = self.last.clone();
        if f.len() < 54 {
            return;
        }
        let ports = |f: &[u8]| [u16::from_be_bytes([f[34], f[35]]), u16::from_be_bytes([f[36], f[37]])];
        for port in ports(&f) {
            self.peers.iter_mut().filter(|p| p.port == port).for_each(|p| p.tainted = true);
        }
        if at & 0x80 != 0 {
            let i = 34 + usize::from(at & 0x7f) % (f.len() - 34).min(60);
            f[i] = value;
            let ip = Ipv4Packet::new_unchecked(&f[14..]);
            let len = usize::from(ip.total_len()).min(f.len() - 14);
            if ip.next_header() != IpProtocol::Tcp || len < 40 {
                return;
            }
            let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
            TcpPacket::new_unchecked(&mut f[34..14 + len]).fill_checksum(&src, &dst);
        } else {
            let i = usize::from(at) % f.len();
            f[i] = value;
        }
        for port in ports(&f) {
            self.peers.iter_mut().filter(|p| p.port == port).for_each(|p| p.tainted = true);
        }
        self.put(f);
    }

    fn ping(&mut self, arg: u8) {
        let data = [arg; 24];
        let icmp = Icmpv4Repr::EchoRequest { ident: 7, seq_no: u16::from(arg), data: &data };
        let ip = Ipv4Repr {
            src_addr: CLIENT_IP,
            dst_addr: SERVER_IP,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth(EthernetAddress(SERVER_MAC), EthernetProtocol::Ipv4).emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        self.put(buf);
    }

    fn arp_request(&mut self) {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(CLIENT_MAC),
            source_protocol_addr: CLIENT_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: SERVER_IP,
        };
        let mut buf = vec![0u8; 14 + arp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth(EthernetAddress::BROADCAST, EthernetProtocol::Arp).emit(&mut f);
        arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
        self.put(buf);
    }

    fn arp_reply(&mut self) {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(CLIENT_MAC),
            source_protocol_addr: CLIENT_IP,
            target_hardware_addr: EthernetAddress(SERVER_MAC),
            target_protocol_addr: SERVER_IP,
        };
        let mut buf = vec![0u8; 14 + arp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth(EthernetAddress(SERVER_MAC), EthernetProtocol::Arp).emit(&mut f);
        arp.emit(&mut ArpPacket::new_checked(f.payload_mut()).expect("sized for it"));
        self.put(buf);
    }

    /// A segment of the current connection, acknowledging what it received.
    fn segment(&self, seq: u32, control: TcpControl, payload: &[u8], sack: Option<(u32, u32)>) -> Vec<u8> {
        let p = &self.peers[self.cur];
        let tcp = TcpRepr {
            src_port: p.port,
            dst_port: PORT,
            control,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: p.established.then_some(TcpSeqNumber(p.rcv_nxt as i32)),
            window_len: p.window,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [sack, None, None],
            timestamp: p.timestamps.then_some(TcpTimestampRepr { tsval: self.now_ms(), tsecr: p.ts_recent }),
            payload,
        };
        frame(&tcp)
    }

    fn emit(&mut self, tcp: &TcpRepr<'_>) {
        let f = frame(tcp);
        self.put(f);
    }

    fn put(&mut self, f: Vec<u8>) {
        if self.trace {
            self.print("client", &f);
        }
        // A full link loses the frame, as a full ring would.
        let _ = self.link.send(self.now, &f);
        self.last = f;
    }

    fn send_acks(&mut self) {
        for i in 0..PEERS {
            let p = &self.peers[i];
            if p.need_ack && !p.hold_acks && p.established && !p.reset {
                let cur = std::mem::replace(&mut self.cur, i);
                let f = self.segment(self.peers[i].snd_nxt, TcpControl::None, &[], None);
                self.put(f);
                self.cur = cur;
                self.peers[i].need_ack = false;
            }
        }
    }

    /// The client's timestamp clock: milliseconds since the harness began, from 1.
    fn now_ms(&self) -> u32 {
        let since = self.wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        1 + (since.as_millis() - u128::from(WALL_START_SECS) * 1000) as u32
    }

    /// Reads and checks every frame the server sent; the client's TCP takes what is
    /// in order and acknowledges it. Returns the frames read.
    fn drain(&mut self) -> usize {
        let frames = RefCell::new(Vec::new());
        let n = self.link.recv(self.now, usize::MAX, &mut |f| frames.borrow_mut().push(f.to_vec()));
        for f in frames.into_inner() {
            self.frames_from_server += 1;
            self.on_frame(&f);
        }
        self.send_acks();
        n
    }

    /// One line per TCP segment: who sent it, ports, flags, sequence numbers, length.
    fn print(&self, who: &str, f: &[u8]) {
        let Ok(e) = EthernetFrame::new_checked(f) else { return };
        let Ok(ip) = Ipv4Packet::new_checked(e.payload()) else { return };
        let Ok(t) = TcpPacket::new_checked(ip.payload()) else { return };
        let flags: String = [(t.syn(), 'S'), (t.fin(), 'F'), (t.rst(), 'R'), (t.psh(), 'P'), (t.ack(), '.')]
            .iter()
            .filter(|f| f.0)
            .map(|f| f.1)
            .collect();
        let head: String = String::from_utf8_lossy(&t.payload()[..t.payload().len().min(16)]).escape_debug().collect();
        eprintln!(
            "{:>8.3}s {who:>6} {}>{} {flags:5} seq {} ack {} win {} len {} {head}",
            self.now_ms() as f64 / 1000.0,
            t.src_port(),
            t.dst_port(),
            t.seq_number().0 as u32,
            t.ack_number().0 as u32,
            t.window_len(),
            t.payload().len()
        );
    }

    fn on_frame(&mut self, f: &[u8]) {
        if self.trace {
            self.print("server", f);
        }
        assert!(f.len() <= 1514, "a {}-byte frame on a 1500-byte MTU link", f.len());
        let e = EthernetFrame::new_checked(f).expect("an Ethernet frame");
        assert_eq!(e.src_addr(), EthernetAddress(SERVER_MAC), "the server's own MAC");
        match e.ethertype() {
            EthernetProtocol::Arp => {
                let arp = ArpPacket::new_checked(e.payload()).expect("a whole ARP packet");
                let repr = ArpRepr::parse(&arp).expect("a well-formed ARP packet");
                // The client answers for its address, as a host does (the server asks
                // again when its entry grows stale).
                if let ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Request, target_protocol_addr: CLIENT_IP, ..
                } = repr
                {
                    self.arp_reply();
                }
                return;
            }
            EthernetProtocol::Ipv4 => {}
            other => panic!("the server sent ethertype {other}"),
        }
        assert_eq!(e.dst_addr(), EthernetAddress(CLIENT_MAC), "IPv4 to the client's MAC");
        let ip = Ipv4Packet::new_checked(e.payload()).expect("a whole IPv4 packet");
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        assert_eq!(ip.dst_addr(), CLIENT_IP);
        let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
        match ip.next_header() {
            IpProtocol::Icmp => {
                let icmp = Icmpv4Packet::new_checked(ip.payload()).expect("a whole ICMP message");
                assert!(icmp.verify_checksum(), "ICMP checksum");
                return;
            }
            IpProtocol::Tcp => {}
            other => panic!("the server sent IP protocol {other}"),
        }
        let tcp = TcpPacket::new_checked(ip.payload()).expect("a whole TCP segment");
        assert!(tcp.verify_checksum(&src, &dst), "TCP checksum of a segment the server sent");
        let repr = TcpRepr::parse(&tcp, &src, &dst, &ChecksumCapabilities::default()).expect("TCP options parse");
        let Some(p) = self.peers.iter_mut().find(|p| p.open && p.port == repr.dst_port) else { return };
        if p.fin_rcvd && p.fin_seq.is_some_and(|fin| seq_lt(fin, p.snd_una)) && repr.control != TcpControl::Rst {
            // Both FINs sent and acknowledged: the client is in TIME-WAIT, and anything
            // more from the server is an old duplicate or a new incarnation of the
            // connection — one that an old duplicate of the client's first segment
            // opened again through a still-valid SYN cookie (RFC 4987 §3.6; Linux
            // accepts the same segment). TIME-WAIT answers it with an ACK and reads
            // nothing (RFC 9293 §3.10.7.4).
            p.need_ack = true;
            return;
        }
        if let Some(ts) = repr.timestamp {
            p.ts_recent = ts.tsval;
        }
        if repr.control == TcpControl::Rst {
            p.reset = true;
            return;
        }
        if p.reset {
            return;
        }
        let seq = repr.seq_number.0 as u32;
        if repr.control == TcpControl::Syn {
            if !p.established {
                p.established = true;
                p.rcv_nxt = seq.wrapping_add(1);
                p.timestamps &= repr.timestamp.is_some();
            }
            p.need_ack = true;
        }
        if let Some(ack) = repr.ack_number {
            let ack = ack.0 as u32;
            if seq_le(p.snd_una, ack) && seq_le(ack, p.snd_nxt) {
                p.snd_una = ack;
            }
        }
        if !p.established || repr.control == TcpControl::Syn {
            return;
        }
        let data = repr.payload;
        if !data.is_empty() || repr.control == TcpControl::Fin {
            p.need_ack = true;
        }
        let end = seq.wrapping_add(data.len() as u32);
        if let (Some(fin), false) = (p.server_fin, data.is_empty()) {
            assert!(seq_le(end, fin), "connection {}: data beyond the server's FIN", p.port);
        }
        if repr.control == TcpControl::Fin {
            if let Some(fin) = p.server_fin {
                assert_eq!(fin, end, "connection {}: the server's FIN moved", p.port);
            }
            p.server_fin = Some(end);
        }
        if seq_le(seq, p.rcv_nxt) && seq_lt(p.rcv_nxt, end) {
            let new = &data[p.rcv_nxt.wrapping_sub(seq) as usize..];
            if p.stream.len() + new.len() <= STREAM_CAP {
                p.stream.extend_from_slice(new);
            } else {
                p.truncated = true;
            }
            p.rcv_nxt = end;
        }
        if repr.control == TcpControl::Fin && end == p.rcv_nxt && !p.fin_rcvd {
            p.fin_rcvd = true;
            p.rcv_nxt = p.rcv_nxt.wrapping_add(1);
        }
    }
}

/// `buf` starts with `HTTP/1.1 DDD ` (no body the harness's handlers or the engine's
/// refusals make does).
fn status_line_at(buf: &[u8]) -> bool {
    buf.len() >= 13 && buf.starts_with(b"HTTP/1.1 ") && buf[9..12].iter().all(u8::is_ascii_digit) && buf[12] == b' '
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn seq_le(a: u32, b: u32) -> bool {
    a == b || seq_lt(a, b)
}

fn eth(dst: EthernetAddress, ethertype: EthernetProtocol) -> EthernetRepr {
    EthernetRepr { src_addr: EthernetAddress(CLIENT_MAC), dst_addr: dst, ethertype }
}

/// A client TCP segment in a frame, checksums right.
fn frame(tcp: &TcpRepr<'_>) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: CLIENT_IP,
        dst_addr: SERVER_IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth(EthernetAddress(SERVER_MAC), EthernetProtocol::Ipv4).emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(p.payload_mut()),
        &IpAddress::Ipv4(CLIENT_IP),
        &IpAddress::Ipv4(SERVER_IP),
        &caps,
    );
    buf
}

/// The destination port of a frame that is a TCP RST over IPv4, if it is one.
fn rst_to(f: &[u8]) -> Option<u16> {
    let e = EthernetFrame::new_checked(f).ok()?;
    let ip = Ipv4Packet::new_checked(e.payload()).ok()?;
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    (ip.next_header() == IpProtocol::Tcp && t.rst()).then(|| t.dst_port())
}
