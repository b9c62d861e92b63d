//! Deterministic TCP tests: our engine against our engine over a seeded simulated
//! network, and scripted segment exchanges in the style of packetdrill.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::*;

mod recovery;

// ---- a test application ------------------------------------------------------------

#[derive(Default)]
struct Cx {
    opened: Vec<ConnId>,
    /// Bytes each new connection queues at once (server responses).
    greeting: Vec<u8>,
    /// Echo what arrives.
    echo: bool,
    /// Finish (FIN) once the greeting is queued.
    close_after_greeting: bool,
    /// Hold received bytes unprocessed (shrinks the window), up to this many.
    hold: usize,
}

#[derive(Default)]
struct App {
    rx: Vec<u8>,
    tx: Vec<u8>,
    acked: usize,
    peer_closed: bool,
    finishing: bool,
    echo: bool,
    held: usize,
    hold: usize,
}

impl TcpApp<Cx> for App {
    fn open(id: ConnId, cx: &mut Cx) -> Self {
        cx.opened.push(id);
        App {
            tx: cx.greeting.clone(),
            finishing: cx.close_after_greeting,
            echo: cx.echo,
            hold: cx.hold,
            ..Default::default()
        }
    }
    fn received(&mut self, data: &[u8], _: ConnId, _: &mut Cx) {
        self.rx.extend_from_slice(data);
        self.held = (self.held + data.len()).min(self.hold);
        if self.echo {
            self.tx.extend_from_slice(data);
        }
    }
    fn peer_closed(&mut self, _: ConnId, _: &mut Cx) {
        self.peer_closed = true;
        if self.echo {
            self.finishing = true;
        }
    }
    fn send_queue(&self) -> &dyn SendQueue {
        &self.tx
    }
    fn acked(&mut self, n: usize, _: ConnId, _: &mut Cx) {
        self.tx.drain(..n);
        self.acked += n;
    }
    fn finishing(&self) -> bool {
        self.finishing
    }
    fn buffered(&self) -> usize {
        self.held
    }
}

type Eng = Engine<App, Cx>;

const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 8080));
const CLIENT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 2), 40000));

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    window: u16,
    mss: Option<u16>,
    wscale: Option<u8>,
    ts: Option<(u32, u32)>,
    sack_permitted: bool,
    sack: [Option<(u32, u32)>; 3],
    payload: Vec<u8>,
}

impl Owned {
    fn of(o: &SegmentOut<'_>) -> Owned {
        let s = &o.seg;
        Owned {
            src: o.src,
            dst: o.dst,
            seq: s.seq,
            ack: s.ack,
            syn: s.syn,
            fin: s.fin,
            rst: s.rst,
            window: s.window,
            mss: s.mss,
            wscale: s.wscale,
            ts: s.ts,
            sack_permitted: s.sack_permitted,
            sack: s.sack,
            payload: o.payload.to_vec(),
        }
    }
    fn seg(&self) -> Segment<'_> {
        Segment {
            src_port: self.src.port(),
            dst_port: self.dst.port(),
            seq: self.seq,
            ack: self.ack,
            syn: self.syn,
            fin: self.fin,
            rst: self.rst,
            window: self.window,
            mss: self.mss,
            wscale: self.wscale,
            ts: self.ts,
            sack_permitted: self.sack_permitted,
            sack: self.sack,
            payload: &self.payload,
            ..Default::default()
        }
    }
}

// ---- the simulated network ----------------------------------------------------------

struct Faults {
    /// Reorder only segments that carry data (the ACK path stays in order).
    reorder_data_only: bool,
    loss_ppm: u64,
    dup_ppm: u64,
    reorder_ppm: u64,
    delay: Duration,
}

struct Sim {
    now: Instant,
    server: Eng,
    client: Eng,
    scx: Cx,
    ccx: Cx,
    wire: VecDeque<(Instant, Owned)>,
    rng: u64,
    faults: Faults,
    delivered: u64,
    dropped: u64,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    /// A bottleneck on the way to the client: (bytes per ms, buffer bytes); segments
    /// queue behind it (their delay grows with the queue) and a full buffer drops.
    bottleneck: Option<(u64, u64)>,
    link_free_at: Instant,
    bottleneck_drops: u64,
}

impl Sim {
    fn new(seed: u64, faults: Faults, cfg: TcpConfig) -> Sim {
        let now = Instant::now();
        let mut server = Eng::new(cfg.clone(), now, 0x5eed);
        server.listen(8080);
        Sim {
            now,
            server,
            client: Eng::new(cfg, now, 0xc11e),
            scx: Cx::default(),
            ccx: Cx::default(),
            wire: VecDeque::new(),
            rng: seed | 1,
            faults,
            delivered: 0,
            dropped: 0,
            server_addr: SERVER,
            client_addr: CLIENT,
            bottleneck: None,
            link_free_at: now,
            bottleneck_drops: 0,
        }
    }

    /// The same network with IPv6 addresses at both ends.
    fn new6(seed: u64, faults: Faults, cfg: TcpConfig) -> Sim {
        let mut sim = Sim::new(seed, faults, cfg);
        sim.server_addr = SocketAddr::new(Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1).into(), 8080);
        sim.client_addr = SocketAddr::new(Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 2).into(), 40000);
        sim
    }

    fn roll(&mut self, ppm: u64) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 1_000_000 < ppm
    }

    fn send(&mut self, segs: Vec<Owned>) {
        for s in segs {
            if self.roll(self.faults.loss_ppm) {
                self.dropped += 1;
                continue;
            }
            let mut at = self.now + self.faults.delay;
            if let Some((rate, buffer)) = self.bottleneck.filter(|_| s.dst == self.client_addr) {
                let bytes = 54 + s.payload.len() as u64;
                let start = self.link_free_at.max(self.now);
                let queued = (start - self.now).as_nanos() as u64 * rate / 1_000_000;
                if queued + bytes > buffer {
                    self.bottleneck_drops += 1;
                    self.dropped += 1;
                    continue;
                }
                self.link_free_at = start + Duration::from_nanos(bytes * 1_000_000 / rate);
                at = self.link_free_at + self.faults.delay;
            }
            if (!self.faults.reorder_data_only || !s.payload.is_empty()) && self.roll(self.faults.reorder_ppm) {
                at += self.faults.delay + Duration::from_millis(3);
            }
            if self.roll(self.faults.dup_ppm) {
                self.wire.push_back((at, s.clone()));
            }
            self.wire.push_back((at, s));
        }
    }

    fn connect(&mut self) -> ConnId {
        let mut out = Vec::new();
        let id =
            self.client.connect(self.client_addr, self.server_addr, self.now, &mut |o| out.push(Owned::of(o))).unwrap();
        self.send(out);
        id
    }

    /// Runs until `done` or `limit` of simulated time; 1 ms steps.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.now += Duration::from_millis(1);
            let now = self.now;
            let mut due: Vec<Owned> = Vec::new();
            let mut i = 0;
            while i < self.wire.len() {
                if self.wire[i].0 <= now {
                    due.push(self.wire.remove(i).unwrap().1);
                } else {
                    i += 1;
                }
            }
            for s in due {
                self.delivered += 1;
                let mut out = Vec::new();
                let to_server = s.dst == self.server_addr;
                let (eng, cx) =
                    if to_server { (&mut self.server, &mut self.scx) } else { (&mut self.client, &mut self.ccx) };
                eng.on_segment(now, s.dst.ip(), s.src.ip(), &s.seg(), cx, &mut |o| out.push(Owned::of(o)));
                self.send(out);
            }
            let mut out = Vec::new();
            self.server.poll(now, &mut self.scx, &mut |o| out.push(Owned::of(o)));
            self.client.poll(now, &mut self.ccx, &mut |o| out.push(Owned::of(o)));
            self.send(out);
        }
        done(self)
    }

    fn client_app(&mut self, id: ConnId) -> &mut App {
        self.client.app_mut(id).expect("client app")
    }

    fn server_app(&mut self) -> Option<&mut App> {
        let id = *self.scx.opened.first()?;
        self.server.app_mut(id)
    }

    fn kick_client(&mut self, id: ConnId) {
        let mut out = Vec::new();
        self.client.kick(id, self.now, &mut self.ccx, &mut |o| out.push(Owned::of(o)));
        self.send(out);
    }

    fn kick_server(&mut self, id: ConnId) {
        let mut out = Vec::new();
        self.server.kick(id, self.now, &mut self.scx, &mut |o| out.push(Owned::of(o)));
        self.send(out);
    }
}

fn no_faults() -> Faults {
    Faults { reorder_data_only: false, loss_ppm: 0, dup_ppm: 0, reorder_ppm: 0, delay: Duration::from_millis(1) }
}

fn pattern(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
}

/// Client sends `n` bytes, server echoes, both close; checks byte-exactness.
fn echo_transfer(seed: u64, faults: Faults, n: usize) -> Sim {
    let mut sim = Sim::new(seed, faults, TcpConfig::default());
    sim.scx.echo = true;
    let id = sim.connect();
    assert!(sim.run(Duration::from_secs(10), |s| s.client.state(id) == Some(State::Established)), "handshake");
    let data = pattern(n, seed as u8);
    sim.client_app(id).tx = data.clone();
    sim.client_app(id).finishing = true;
    sim.kick_client(id);
    let ok = sim.run(Duration::from_secs(300), |s| {
        s.client.app_mut(id).is_some_and(|a| a.rx.len() == n && a.peer_closed) || s.client.state(id).is_none()
    });
    if !ok {
        let a = sim.client.app_mut(id).map(|a| (a.rx.len(), a.tx.len(), a.peer_closed));
        let sid = sim.scx.opened.first().copied();
        let b = sid.and_then(|s| sim.server.app_mut(s)).map(|a| (a.rx.len(), a.tx.len(), a.peer_closed));
        panic!(
            "transfer stalled (dropped {} of {}): client {:?} {:?} server {:?} {:?}\nclient {}\nserver {}\nclient {:?}\nserver {:?}",
            sim.dropped, sim.delivered, sim.client.state(id), a, sid.and_then(|s| sim.server.state(s)), b,
            sim.client.debug(id), sid.map(|s| sim.server.debug(s)).unwrap_or_default(),
            sim.client.counters(), sim.server.counters()
        );
    }
    let got = std::mem::take(&mut sim.client_app(id).rx);
    if got != data {
        let srv = sim.server_app().map(|a| a.rx.clone()).unwrap_or_default();
        let first = |a: &[u8]| a.iter().zip(&data).position(|(x, y)| x != y);
        panic!(
            "echo differs: client got {} bytes, first diff {:?}; server got {} bytes, first diff {:?}",
            got.len(),
            first(&got),
            srv.len(),
            first(&srv)
        );
    }
    sim
}

#[test]
fn handshake_transfer_and_orderly_close() {
    let mut sim = echo_transfer(1, no_faults(), 100_000);
    let c = sim.server.counters();
    assert_eq!((c.established, c.rto_retransmits, c.fast_retransmits), (1, 0, 0));
    // Both sides end: the server (LAST-ACK → closed), the client lingers in TIME_WAIT.
    assert!(sim.run(Duration::from_secs(1), |s| s.server.connections() == 0));
    assert!(sim.run(Duration::from_secs(5), |s| s.client.connections() == 0), "TIME_WAIT expires");
    assert_eq!(sim.server.counters().closed, 1);
}

#[test]
fn survives_seeded_loss_duplication_and_reordering() {
    for seed in [3u64, 17, 99] {
        let faults = Faults {
            reorder_data_only: false,
            loss_ppm: 50_000,
            dup_ppm: 10_000,
            reorder_ppm: 250_000,
            delay: Duration::from_millis(10),
        };
        let sim = echo_transfer(seed, faults, 300_000);
        let c = sim.client.counters();
        assert!(c.rto_retransmits + c.fast_retransmits > 0, "loss was repaired by retransmission: {c:?}");
        assert!(sim.server.counters().out_of_order + sim.client.counters().out_of_order > 0);
    }
}

#[test]
fn rtt_is_measured_with_timestamps() {
    let mut sim = Sim::new(5, Faults { delay: Duration::from_millis(20), ..no_faults() }, TcpConfig::default());
    sim.scx.echo = true;
    let id = sim.connect();
    sim.run(Duration::from_secs(2), |s| s.client.state(id) == Some(State::Established));
    sim.client_app(id).tx = vec![1; 10_000];
    sim.kick_client(id);
    sim.run(Duration::from_secs(5), |s| s.client.app_mut(id).is_some_and(|a| a.rx.len() == 10_000));
    let srtt = sim.client.srtt(id).expect("measured");
    assert!(srtt >= Duration::from_millis(39) && srtt <= Duration::from_millis(60), "{srtt:?}");
}

#[test]
fn simultaneous_close() {
    let mut sim = Sim::new(7, no_faults(), TcpConfig::default());
    let id = sim.connect();
    sim.run(Duration::from_secs(1), |s| s.client.state(id) == Some(State::Established) && !s.scx.opened.is_empty());
    // Both applications finish in the same millisecond: FINs cross on the wire.
    sim.client_app(id).finishing = true;
    sim.server_app().unwrap().finishing = true;
    let sid = sim.scx.opened[0];
    let mut out = Vec::new();
    let now = sim.now;
    sim.client.kick(id, now, &mut sim.ccx, &mut |o| out.push(Owned::of(o)));
    sim.server.kick(sid, now, &mut sim.scx, &mut |o| out.push(Owned::of(o)));
    assert_eq!(out.iter().filter(|s| s.fin).count(), 2);
    sim.send(out);
    assert!(
        sim.run(Duration::from_millis(50), |s| s.client.state(id) == Some(State::TimeWait)
            && s.server.state(sid) == Some(State::TimeWait)),
        "both pass CLOSING to TIME_WAIT"
    );
    assert!(sim.run(Duration::from_secs(5), |s| s.client.connections() + s.server.connections() == 0));
}

#[test]
fn zero_window_is_probed_until_it_opens() {
    let cfg = TcpConfig { recv_window_bytes: 4096, window_scale: 0, ..TcpConfig::default() };
    let mut sim = Sim::new(9, no_faults(), cfg);
    sim.scx.hold = 4096; // the server application holds everything: window → 0
    let id = sim.connect();
    sim.run(Duration::from_secs(1), |s| s.client.state(id) == Some(State::Established));
    sim.client_app(id).tx = vec![7; 20_000];
    sim.kick_client(id);
    sim.run(Duration::from_secs(3), |s| s.client.counters().window_probes >= 2);
    assert!(sim.client.counters().window_probes >= 2, "{:?}", sim.client.counters());
    assert_eq!(sim.server_app().unwrap().rx.len(), 4096, "nothing beyond the window was accepted");
    // The application drains: the window opens and the transfer completes.
    let sid = sim.scx.opened[0];
    sim.server.app_mut(sid).unwrap().hold = 0;
    sim.server.app_mut(sid).unwrap().held = 0;
    assert!(sim.run(Duration::from_secs(60), |s| s.server_app().is_some_and(|a| a.rx.len() == 20_000)));
}

#[test]
fn a_window_reopened_by_the_application_is_announced_at_once() {
    let cfg = TcpConfig { recv_window_bytes: 4096, window_scale: 0, ..TcpConfig::default() };
    let mut sim = Sim::new(11, no_faults(), cfg);
    sim.scx.hold = 4096;
    let id = sim.connect();
    sim.run(Duration::from_secs(1), |s| s.client.state(id) == Some(State::Established));
    sim.client_app(id).tx = vec![7; 20_000];
    sim.kick_client(id);
    sim.run(Duration::from_secs(3), |s| s.client.counters().window_probes >= 2);
    let probes = sim.client.counters().window_probes;
    // The application drains and its core kicks the connection: a window update goes
    // out now, and the rest arrives without waiting for the next (backed-off) probe.
    let sid = sim.scx.opened[0];
    sim.server.app_mut(sid).unwrap().hold = 0;
    sim.server.app_mut(sid).unwrap().held = 0;
    sim.kick_server(sid);
    assert!(sim.run(Duration::from_millis(300), |s| s.server_app().is_some_and(|a| a.rx.len() == 20_000)));
    assert_eq!(sim.client.counters().window_probes, probes, "no probe was needed");
}

// ---- scripted exchanges against a server engine -----------------------------------------

struct Script {
    eng: Eng,
    cx: Cx,
    now: Instant,
}

fn cseg(seq: u32, ack: Option<u32>) -> Owned {
    Owned {
        src: CLIENT,
        dst: SERVER,
        seq,
        ack,
        syn: false,
        fin: false,
        rst: false,
        window: 65535,
        mss: None,
        wscale: None,
        ts: None,
        sack_permitted: false,
        sack: [None; 3],
        payload: Vec::new(),
    }
}

impl Script {
    fn new(cfg: TcpConfig) -> Script {
        let now = Instant::now();
        let mut eng = Eng::new(cfg, now, 42);
        eng.listen(8080);
        Script { eng, cx: Cx::default(), now }
    }

    fn inject(&mut self, s: Owned) -> Vec<Owned> {
        let mut out = Vec::new();
        self.eng.on_segment(self.now, SERVER.ip(), s.src.ip(), &s.seg(), &mut self.cx, &mut |o| out.push(Owned::of(o)));
        out
    }

    fn wait(&mut self, d: Duration) -> Vec<Owned> {
        let mut out = Vec::new();
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(1);
            self.eng.poll(self.now, &mut self.cx, &mut |o| out.push(Owned::of(o)));
        }
        out
    }

    /// SYN from 1000 (with options), ACK of the SYN-ACK; returns the server ISS.
    fn handshake(&mut self, ts: bool) -> u32 {
        let mut syn = cseg(1000, None);
        syn.syn = true;
        syn.mss = Some(1460);
        syn.wscale = Some(7);
        syn.ts = ts.then_some((100, 0));
        let out = self.inject(syn);
        assert_eq!(out.len(), 1);
        let sa = &out[0];
        assert!(sa.syn && sa.ack == Some(1001) && sa.mss == Some(1460) && sa.wscale == Some(7));
        assert_eq!(sa.ts.map(|t| t.1), ts.then_some(100), "TSecr echoes our TSval");
        let mut ack = cseg(1001, Some(sa.seq.wrapping_add(1)));
        ack.ts = ts.then_some((101, sa.ts.map_or(0, |t| t.0)));
        let after = self.inject(ack);
        assert_eq!(after.is_empty(), self.cx.greeting.is_empty(), "data follows the handshake only if queued");
        assert_eq!(self.cx.opened.len(), 1);
        sa.seq
    }

    fn data(&mut self, seq: u32, ack: u32, payload: &[u8]) -> Vec<Owned> {
        let mut s = cseg(seq, Some(ack));
        s.payload = payload.to_vec();
        self.inject(s)
    }

    fn app(&mut self) -> &mut App {
        let id = self.cx.opened[0];
        self.eng.app_mut(id).unwrap()
    }
}

#[test]
fn scripted_handshake_and_data_ack() {
    let mut s = Script::new(TcpConfig { delayed_ack_ms: 40, ..TcpConfig::default() });
    let iss = s.handshake(false);
    assert!(s.data(1001, iss + 1, b"hello").is_empty(), "first segment: ACK delayed");
    let out = s.wait(Duration::from_millis(45));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, Some(1006));
    let out = [s.data(1006, iss + 1, b"ab"), s.data(1008, iss + 1, b"cd")].concat();
    assert_eq!(out.len(), 1, "every second segment is ACKed at once");
    assert_eq!(out[0].ack, Some(1010));
    assert_eq!(s.app().rx, b"helloabcd");
}

#[test]
fn scripted_out_of_order_reassembly() {
    let mut s = Script::new(TcpConfig::default());
    let iss = s.handshake(false);
    let out = s.data(1006, iss + 1, b"world");
    assert_eq!(out.len(), 1, "a hole: immediate duplicate ACK");
    assert_eq!(out[0].ack, Some(1001));
    assert!(s.app().rx.is_empty());
    let out = s.data(1001, iss + 1, b"hello");
    assert_eq!(out.last().unwrap().ack, Some(1011), "hole filled, both delivered");
    assert_eq!(s.app().rx, b"helloworld");
    assert_eq!(s.eng.counters().out_of_order, 1);
    // Overlapping retransmission of old bytes delivers nothing twice.
    s.data(1004, iss + 1, b"loworldXY");
    assert_eq!(s.app().rx, b"helloworldXY");
}

#[test]
fn scripted_retransmission_after_loss() {
    let mut s = Script::new(TcpConfig::default());
    s.cx.greeting = vec![b'R'; 3000];
    let iss = s.handshake(false);
    // Establishment queued 3000 bytes: they went out with the final ACK processing.
    let sent: Vec<Owned> = s.wait(Duration::from_millis(1));
    let _ = sent;
    let out = s.data(1001, iss + 1, b"x");
    let first: Vec<&Owned> = out.iter().filter(|o| !o.payload.is_empty()).collect();
    assert!(first.is_empty() || first[0].seq == iss + 1);
    // No ACK for the data: after the RTO (1 s initial) it is sent again from SND.UNA.
    let again = s.wait(Duration::from_millis(1100));
    let rtx: Vec<&Owned> = again.iter().filter(|o| !o.payload.is_empty()).collect();
    assert!(!rtx.is_empty(), "retransmitted");
    assert_eq!(rtx[0].seq, iss + 1);
    assert_eq!(s.eng.counters().rto_retransmits, 1);
    // Backoff: the next retransmission comes after ~2 s, not 1 s.
    assert!(s.wait(Duration::from_millis(1500)).iter().all(|o| o.payload.is_empty()));
    assert!(s.wait(Duration::from_millis(700)).iter().any(|o| !o.payload.is_empty()));
    // Three duplicate ACKs trigger a fast retransmit instead.
    let una = iss + 1;
    s.data(1002, una + 1460, b"");
    for _ in 0..3 {
        s.inject(cseg(1002, Some(una + 1460)));
    }
    assert_eq!(s.eng.counters().fast_retransmits, 1);
}

#[test]
fn scripted_rst_acceptance_rules() {
    let mut s = Script::new(TcpConfig::default());
    let iss = s.handshake(false);
    // Out of window: ignored, no answer.
    let mut rst = cseg(900_000, None);
    rst.rst = true;
    assert!(s.inject(rst).is_empty());
    // In window but not exact: challenge ACK (RFC 5961), connection stays.
    let mut rst = cseg(1500, None);
    rst.rst = true;
    let out = s.inject(rst);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, Some(1001));
    assert_eq!(s.eng.connections(), 1);
    assert_eq!(s.eng.counters().challenge_acks, 1);
    // A SYN on the established connection: challenge ACK too.
    let mut syn = cseg(5000, None);
    syn.syn = true;
    assert_eq!(s.inject(syn).len(), 1);
    assert_eq!(s.eng.connections(), 1);
    // Exactly RCV.NXT: the connection is reset.
    let mut rst = cseg(1001, Some(iss + 1));
    rst.rst = true;
    assert!(s.inject(rst).is_empty());
    assert_eq!(s.eng.connections(), 0);
    assert_eq!(s.eng.counters().reset, 1);
}

#[test]
fn scripted_segments_for_unknown_connections_get_rst() {
    let mut s = Script::new(TcpConfig::default());
    let out = s.data(1, 77, b"stray");
    assert_eq!(out.len(), 1);
    assert!(out[0].rst && out[0].seq == 77, "RST with SEQ = SEG.ACK");
    let mut closed_port = cseg(1, None);
    closed_port.syn = true;
    closed_port.dst = SocketAddr::new(SERVER.ip(), 9);
    let out = s.inject(closed_port);
    assert!(out[0].rst && out[0].ack == Some(2), "RST,ACK to a SYN on a closed port");
}

#[test]
fn scripted_syn_flood_answered_with_cookies() {
    let mut s = Script::new(TcpConfig { syn_backlog: 4, ..TcpConfig::default() });
    for i in 0..4u16 {
        let mut syn = cseg(10, None);
        syn.syn = true;
        syn.src = SocketAddr::new(CLIENT.ip(), 50000 + i);
        assert!(s.inject(syn)[0].syn);
    }
    assert_eq!(s.eng.connections(), 4, "the SYN queue is full");
    let mut syn = cseg(5000, None);
    syn.syn = true;
    syn.mss = Some(1460);
    syn.src = SocketAddr::new(CLIENT.ip(), 60000);
    let out = s.inject(syn);
    assert!(out[0].syn && out[0].ack == Some(5001));
    assert_eq!(s.eng.connections(), 4, "no state kept for the cookie");
    assert_eq!(s.eng.counters().syn_cookies_sent, 1);
    // The right ACK makes an established connection from the cookie alone.
    let mut ack = cseg(5001, Some(out[0].seq.wrapping_add(1)));
    ack.src = SocketAddr::new(CLIENT.ip(), 60000);
    ack.payload = b"GET".to_vec();
    s.inject(ack);
    assert_eq!(s.eng.counters().syn_cookies_accepted, 1);
    assert_eq!(s.eng.connections(), 5);
    let id = *s.cx.opened.last().unwrap();
    assert_eq!(s.eng.app_mut(id).unwrap().rx, b"GET");
    // A forged ACK is refused with RST.
    let mut forged = cseg(7001, Some(0x1234_5678));
    forged.src = SocketAddr::new(CLIENT.ip(), 61000);
    let out = s.inject(forged);
    assert!(out[0].rst);
    assert_eq!(s.eng.counters().syn_cookies_invalid, 1);
    // Half-open connections time out after their SYN-ACK retries.
    s.wait(Duration::from_secs(70));
    assert_eq!(s.eng.counters().syn_timeouts, 4);
}

#[test]
fn scripted_paws_rejects_old_timestamps() {
    let mut s = Script::new(TcpConfig::default());
    let iss = s.handshake(true);
    let mut seg = cseg(1001, Some(iss + 1));
    seg.ts = Some((200, 1));
    seg.payload = b"new".to_vec();
    s.inject(seg);
    assert_eq!(s.app().rx, b"new");
    let mut old = cseg(1004, Some(iss + 1));
    old.ts = Some((150, 1)); // older than TS.Recent = 200: a wrapped old duplicate
    old.payload = b"old".to_vec();
    let out = s.inject(old);
    assert_eq!(s.app().rx, b"new", "rejected");
    assert_eq!(s.eng.counters().paws_rejected, 1);
    assert_eq!(out.len(), 1, "answered with an ACK");
}

#[test]
fn idle_connections_close_and_time_wait_is_short() {
    let mut s = Script::new(TcpConfig { idle_timeout_ms: 500, time_wait_ms: 300, ..TcpConfig::default() });
    let iss = s.handshake(false);
    let out = s.wait(Duration::from_millis(600));
    assert!(out.iter().any(|o| o.fin), "idle close sends FIN");
    assert_eq!(s.eng.counters().idle_closed, 1);
    let fin = out.iter().find(|o| o.fin).unwrap().clone();
    let mut ack_fin = cseg(1001, Some(fin.seq + 1));
    ack_fin.fin = true;
    let out = s.inject(ack_fin);
    assert_eq!(out.last().unwrap().ack, Some(1002));
    let _ = iss;
    assert_eq!(s.eng.connections(), 1, "TIME_WAIT");
    s.wait(Duration::from_millis(350));
    assert_eq!(s.eng.connections(), 0);
}

/// The FIN of an idle close is retransmitted like any other (the end-to-end fuzz
/// harness found it sent once: a lost FIN left the connection in FIN-WAIT-1 for ever);
/// a peer that never answers is reset after `data_retries`; one that takes our FIN but
/// never sends its own is reset after `fin_wait2_timeout_ms`.
#[test]
fn an_idle_close_fin_is_retransmitted_and_fin_wait_2_ends() {
    let cfg = TcpConfig { idle_timeout_ms: 500, data_retries: 3, fin_wait2_timeout_ms: 5000, ..TcpConfig::default() };
    let mut s = Script::new(cfg.clone());
    s.handshake(false);
    let out = s.wait(Duration::from_millis(600));
    let fins: Vec<_> = out.iter().filter(|o| o.fin).collect();
    assert_eq!(fins.len(), 1, "idle close sends FIN");
    let fin_seq = fins[0].seq;
    let out = s.wait(Duration::from_millis(1500));
    assert!(out.iter().any(|o| o.fin && o.seq == fin_seq), "the lost FIN is sent again: {out:?}");
    let out = s.wait(Duration::from_secs(30));
    assert!(out.iter().any(|o| o.rst), "reset once retransmissions ran out");
    assert_eq!(s.eng.connections(), 0);

    let mut s = Script::new(cfg);
    s.handshake(false);
    let fin = s.wait(Duration::from_millis(600)).into_iter().find(|o| o.fin).expect("idle FIN");
    assert!(s.inject(cseg(1001, Some(fin.seq + 1))).is_empty(), "our FIN acknowledged: FIN-WAIT-2");
    assert_eq!(s.eng.connections(), 1);
    let out = s.wait(Duration::from_millis(4800));
    assert!(out.is_empty() && s.eng.connections() == 1, "FIN-WAIT-2 waits for the peer's FIN");
    let out = s.wait(Duration::from_millis(400));
    assert!(out.iter().any(|o| o.rst), "then gives up with a reset");
    assert_eq!(s.eng.connections(), 0);
    assert_eq!(s.eng.counters().fin_wait2_timeouts, 1);
}

/// After an idle close our FIN holds the sequence number a reply would need, and no app
/// answers: a request that arrives now is reset, not delivered (the fuzz harness found
/// a reply sent over the FIN's sequence number).
#[test]
fn a_request_after_an_idle_close_is_reset() {
    let mut s = Script::new(TcpConfig { idle_timeout_ms: 500, ..TcpConfig::default() });
    s.handshake(false);
    let fin = s.wait(Duration::from_millis(600)).into_iter().find(|o| o.fin).expect("idle FIN");
    let out = s.data(1001, fin.seq, b"GET / HTTP/1.1\r\n\r\n");
    assert!(out.iter().any(|o| o.rst), "reset: {out:?}");
    assert_eq!(s.eng.connections(), 0);
}

/// An out-of-order segment that shut the window (it carries a later SEG.SEQ) does not
/// keep it shut: the next ACK of new data reopens it, as in Linux.
#[test]
fn an_ack_of_new_data_reopens_a_window_an_out_of_order_segment_shut() {
    let mut s = Script::new(TcpConfig { delayed_ack_ms: 0, ..TcpConfig::default() });
    let iss = s.handshake(false);
    s.app().tx.extend_from_slice(&vec![7u8; 100_000]);
    let first = s.inject(cseg(1001, Some(iss + 1)));
    let sent: u32 = first.iter().map(|o| o.payload.len() as u32).sum();
    assert!(sent > 0 && sent < 100_000, "a first flight ({sent} bytes)");
    let mut ahead = cseg(1101, Some(iss + 1));
    ahead.window = 0;
    ahead.payload = b"later".to_vec();
    s.inject(ahead); // stored out of order; its window is 0
    let out = s.inject(cseg(1001, Some(iss + 1 + sent)));
    assert!(out.iter().any(|o| !o.payload.is_empty()), "the reopened window is used: {out:?}");
}

/// A peer that keeps its window shut on data we must send, answering every probe, is
/// reset after `persist_timeout_ms` (else a reader that never reads holds the
/// connection and its response for ever).
#[test]
fn a_window_shut_for_too_long_ends_the_connection() {
    let mut s = Script::new(TcpConfig { persist_timeout_ms: 20_000, ..TcpConfig::default() });
    let iss = s.handshake(false);
    s.app().tx.extend_from_slice(&[7u8; 4000]);
    let mut shut = cseg(1001, Some(iss + 1));
    shut.window = 0;
    s.inject(shut.clone());
    let mut probes = 0;
    for _ in 0..40 {
        let out = s.wait(Duration::from_secs(1));
        if out.iter().any(|o| o.rst) {
            break;
        }
        probes += out.len();
        // Every probe answered: still shut.
        if !out.is_empty() {
            s.inject(shut.clone());
        }
    }
    assert!(probes >= 2, "the window was probed ({probes})");
    assert_eq!(s.eng.connections(), 0, "reset after 20 s shut");
    assert_eq!(s.eng.counters().persist_timeouts, 1);
}

#[test]
fn arbitrary_segments_never_panic() {
    let mut s = Script::new(TcpConfig { syn_backlog: 8, ..TcpConfig::default() });
    let iss = s.handshake(true);
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..20_000 {
        let r = next();
        let mut seg = cseg(
            if r & 1 == 0 { 1001u32.wrapping_add((next() % 3000) as u32) } else { next() as u32 },
            if r & 2 == 0 {
                Some(iss.wrapping_add((next() % 5000) as u32))
            } else if r & 4 == 0 {
                Some(next() as u32)
            } else {
                None
            },
        );
        seg.syn = r & 8 != 0 && r & 16 == 0;
        seg.fin = r & 32 != 0;
        seg.rst = r & 64 != 0 && r & 128 == 0;
        seg.window = next() as u16;
        seg.ts = (r & 256 != 0).then(|| (next() as u32, next() as u32));
        seg.src = SocketAddr::new(CLIENT.ip(), 40000 + (next() % 4) as u16);
        seg.payload = vec![b'z'; (next() % 2000) as usize];
        s.inject(seg);
        if r % 97 == 0 {
            s.wait(Duration::from_millis(next() % 500));
        }
    }
    assert!(s.eng.connections() <= 4 + 8);
}

#[test]
fn a_hundred_thousand_connections_each_reached_by_its_tuple() {
    // 100k established connections; a segment reaches exactly its own connection (hash
    // demux), and the timer wheel carries them all without scanning.
    let mut s = Script::new(TcpConfig { syn_backlog: 200_000, ..TcpConfig::default() });
    let addr = |i: u32| SocketAddr::new(Ipv4Addr::from(0x0a00_0000 + (i >> 12)).into(), 1024 + (i & 0xfff) as u16);
    let mut isss = Vec::with_capacity(100_000);
    for i in 0..100_000u32 {
        let mut syn = cseg(1000, None);
        syn.syn = true;
        syn.src = addr(i);
        let sa = s.inject(syn).remove(0);
        let mut ack = cseg(1001, Some(sa.seq + 1));
        ack.src = addr(i);
        s.inject(ack);
        isss.push(sa.seq);
    }
    assert_eq!((s.eng.connections(), s.eng.counters().established), (100_000, 100_000));
    for i in [0u32, 77, 4096, 99_999] {
        let mut d = cseg(1001, Some(isss[i as usize] + 1));
        d.src = addr(i);
        d.payload = format!("conn {i}").into_bytes();
        s.inject(d);
        let id = s.cx.opened[i as usize];
        assert_eq!(s.eng.app_mut(id).unwrap().rx, format!("conn {i}").into_bytes());
    }
    s.wait(Duration::from_millis(100));
    assert_eq!(s.eng.connections(), 100_000);
}

#[test]
fn a_source_over_its_connection_cap_gets_an_rst_and_others_do_not() {
    let mut s = Script::new(TcpConfig { max_connections_per_source: 2, ..TcpConfig::default() });
    let syn_from = |ip: [u8; 4], port: u16| {
        let mut syn = cseg(1000, None);
        syn.src = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port));
        syn.syn = true;
        syn
    };
    // Two half-open connections from one address count against its cap.
    for port in [5000, 5001] {
        let out = s.inject(syn_from([10, 99, 0, 2], port));
        assert!(out.len() == 1 && out[0].syn, "SYN-ACK");
    }
    let out = s.inject(syn_from([10, 99, 0, 2], 5002));
    assert!(out.len() == 1 && out[0].rst && !out[0].syn, "the third gets an RST: {out:?}");
    assert_eq!(s.eng.counters().refused_per_source, 1);
    // Another address is not affected.
    let out = s.inject(syn_from([10, 99, 0, 3], 5000));
    assert!(out.len() == 1 && out[0].syn);
    // Once a connection of the first address ends, it may open another.
    let mut rst = cseg(1001, None);
    rst.src = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 2), 5000));
    rst.rst = true;
    s.inject(rst);
    let out = s.inject(syn_from([10, 99, 0, 2], 5003));
    assert!(out.len() == 1 && out[0].syn, "room again after a connection ended: {out:?}");
    assert_eq!(s.eng.counters().refused_per_source, 1);
}

/// Found by the stack_http fuzzer: both sides closed at once (CLOSING), our FIN not yet
/// acknowledged, and the peer's window shut. The FIN must be retransmitted (a shut
/// window holds back data, not a FIN) and the connection must end after `data_retries`
/// if it is never acknowledged; it used to wait for a window probe that had nothing to
/// probe, with no timer left.
#[test]
fn scripted_closing_behind_a_zero_window_retransmits_the_fin_and_ends() {
    let mut s = Script::new(TcpConfig { data_retries: 3, ..TcpConfig::default() });
    s.cx.greeting = b"hi".to_vec();
    s.cx.close_after_greeting = true;
    let iss = s.handshake(false);
    assert_eq!(s.eng.connections(), 1);
    // The client takes "hi" but not the FIN, shuts its window and sends its own FIN.
    let mut seg = cseg(1001, Some(iss.wrapping_add(3)));
    seg.window = 0;
    seg.fin = true;
    let out = s.inject(seg);
    assert!(out.iter().any(|o| o.ack == Some(1002)), "the peer's FIN is acknowledged: {out:?}");
    let later = s.wait(Duration::from_secs(60));
    let fins = later.iter().filter(|o| o.fin && o.seq == iss.wrapping_add(3)).count();
    assert!(fins >= 2, "the FIN is sent again: {later:?}");
    assert_eq!(s.eng.connections(), 0, "given up after data_retries");
}
