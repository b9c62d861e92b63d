//! The packet transport over in-memory links: ARP and ICMP answered; outbound TCP
//! connections through our engine's active open to another transport serving HTTP,
//! byte-exact; refused and timed-out connects as typed errors.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr,
};

use super::*;
use crate::app::exec::Outcome;
use crate::app::{AppSet, ControlPlane, Ctx, Cx, DispatchConfig, HandlerError, Reply, Route, Router, Shared};
use crate::http::{HttpLimits, Method, ReqId, Request, Response};
use crate::mem::{ChunkPool, HugepagePolicy, Region, HUGEPAGE_BYTES};
use crate::net::NetConfig;
use crate::nic::loopback::Loopback;

fn dispatch(router: Router) -> (Dispatch, ControlPlane) {
    let plane = ControlPlane::start(8).unwrap();
    let pool = Rc::new(ChunkPool::new(Region::map(HUGEPAGE_BYTES, None, HugepagePolicy::Off).unwrap(), 64 << 10));
    let cfg = DispatchConfig {
        limits: HttpLimits::default(),
        arena_cap: 1 << 20,
        deadline: Duration::from_secs(5),
        max_in_flight: 64,
        file_reads: 64,
    };
    let apps = Arc::new(AppSet::new(router, Shared::default()));
    (Dispatch::new(apps, cfg, pool, plane.handle()), plane)
}

fn transport(io: Loopback, cfg: NetConfig) -> StackTransport<Loopback> {
    let poll = Polling {
        rx_batch: 64,
        idle_spin: Duration::ZERO,
        idle_sleep: Duration::ZERO,
        wake_cost: Some(Duration::ZERO),
        busy_poll_below: Duration::ZERO,
    };
    let tcp = crate::tcp::TcpConfig { delayed_ack_ms: 0, ..Default::default() };
    StackTransport::new(io, NetStack::new(cfg, Arc::default()), poll, tcp, Some(80), 7)
}

fn host(last: u8) -> NetConfig {
    NetConfig {
        mac: [2, 0, 0, 0, 0, last],
        ip: Ipv4Addr::new(10, 99, 0, last),
        prefix_len: 24,
        gateway: None,
        ip6: None,
        gateway6: None,
    }
}

fn body<'a>(req: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let n: usize = req.param("n").and_then(|s| s.parse().ok()).unwrap_or(0);
    let b = cx.arena().alloc_bytes(n)?;
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i % 251) as u8;
    }
    Ok(Response::ok("application/octet-stream", b).into())
}

/// A client transport (10.99.0.1) and an HTTP server transport (10.99.0.2) on one link.
struct Pair {
    a: StackTransport<Loopback>,
    da: Dispatch,
    b: StackTransport<Loopback>,
    db: Dispatch,
    now: Instant,
    _planes: (ControlPlane, ControlPlane),
}

impl Pair {
    fn new() -> Pair {
        let (la, lb) = Loopback::pair(4096);
        let (da, pa) = dispatch(Router::new());
        let mut router = Router::new();
        router.add(Route::sync(Method::Get, "/body/{n}", body)).unwrap();
        let (db, pb) = dispatch(router);
        Pair { a: transport(la, host(1)), da, b: transport(lb, host(2)), db, now: Instant::now(), _planes: (pa, pb) }
    }

    /// Starts `fut` as a task on the client side.
    fn spawn(&mut self, fut: crate::app::HandlerFuture) -> crate::app::exec::TaskGuard {
        let deadline = self.now + Duration::from_secs(30);
        self.da.exec_mut().spawn(fut, 0, ReqId::from_raw(1), deadline)
    }

    fn cx(&self) -> Cx {
        Cx { core: self.da.exec().core().clone(), deadline: self.now + Duration::from_secs(30) }
    }

    /// Runs both sides 1 ms at a time until the client's task ends (at most `ms`).
    fn run_until_done(&mut self, ms: u64) -> Outcome {
        for _ in 0..ms {
            self.now += Duration::from_millis(1);
            let now = self.now;
            self.a.turn(now, &mut self.da);
            let items = self.da.run(now);
            for (_, item) in items {
                if let Delivery::Task(outcome) = item {
                    return outcome;
                }
            }
            self.a.outbound(now, &mut self.da);
            self.b.turn(now, &mut self.db);
            let items = self.db.run(now);
            self.b.deliver(now, &mut self.db, items);
        }
        panic!("the task did not finish in {ms} simulated ms");
    }
}

async fn fetch(cx: Cx, port: u16, path: String) -> Result<Response<'static>, HandlerError> {
    let addr = std::net::SocketAddr::from(([10, 99, 0, 2], port));
    let mut up =
        cx.connect(addr, Duration::from_secs(2)).await.map_err(|e| HandlerError::status(502, e.to_string()))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    up.write_all(req.as_bytes()).await.map_err(|e| HandlerError::status(502, e.to_string()))?;
    let mut out = Vec::new();
    up.read_to_end(&mut out, 16 << 20).await.map_err(|e| HandlerError::status(502, e.to_string()))?;
    Ok(Response::new(200, "application/octet-stream", crate::http::Body::Owned(out)))
}

#[test]
fn an_outbound_connection_through_our_engine_fetches_byte_exact() {
    let mut p = Pair::new();
    let cx = p.cx();
    let _g = p.spawn(Box::pin(fetch(cx, 80, "/body/300000".into())));
    let resp = match p.run_until_done(20_000) {
        Outcome::Done(Ok(resp)) => resp,
        other => panic!("fetch failed: {other:?}"),
    };
    let crate::http::Body::Owned(raw) = resp.body else { panic!("owned body") };
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", String::from_utf8_lossy(&raw[..head_end]));
    let body = &raw[head_end..];
    assert_eq!(body.len(), 300_000);
    assert!(body.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8), "byte-exact");
    let ob = p.da.exec().core().outbound.borrow().counters;
    assert_eq!((ob.connects, ob.established, ob.refused), (1, 1, 0));
    assert!(ob.bytes_in >= 300_000);
}

#[test]
fn a_refused_outbound_connection_is_a_typed_error() {
    let mut p = Pair::new();
    let cx = p.cx();
    let _g = p.spawn(Box::pin(async move {
        match cx.connect(std::net::SocketAddr::from(([10, 99, 0, 2], 81)), Duration::from_secs(2)).await {
            Err(crate::app::UpstreamError::Refused) => Ok(Response::text(200, "refused")),
            other => Err(HandlerError::status(500, format!("{other:?}"))),
        }
    }));
    match p.run_until_done(5_000) {
        Outcome::Done(Ok(r)) => assert_eq!(r.status, 200),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(p.da.exec().core().outbound.borrow().counters.refused, 1);
}

#[test]
fn a_connect_to_a_silent_address_times_out() {
    let mut p = Pair::new();
    let cx = p.cx();
    let _g = p.spawn(Box::pin(async move {
        // 10.99.0.3 does not exist: ARP goes unanswered, the SYN never leaves.
        match cx.connect(std::net::SocketAddr::from(([10, 99, 0, 3], 80)), Duration::from_millis(300)).await {
            Err(crate::app::UpstreamError::TimedOut) => Ok(Response::text(200, "timed out")),
            other => Err(HandlerError::status(500, format!("{other:?}"))),
        }
    }));
    match p.run_until_done(2_000) {
        Outcome::Done(Ok(r)) => assert_eq!(r.status, 200),
        other => panic!("expected TimedOut, got {other:?}"),
    }
}

#[test]
fn loop_answers_pings_over_the_loopback_and_counts() {
    let (peer, ours) = Loopback::pair(1024);
    let mut peer = peer;
    let cfg = NetConfig {
        mac: [2, 0, 0, 0, 0, 1],
        ip: "10.99.0.1".parse().unwrap(),
        prefix_len: 24,
        gateway: None,
        ip6: None,
        gateway6: None,
    };
    let (mut d, _plane) = dispatch(Router::new());
    let mut lp = transport(ours, cfg);
    let caps = ChecksumCapabilities::default();
    for seq in 0..10u16 {
        let icmp = Icmpv4Repr::EchoRequest { ident: 1, seq_no: seq, data: b"hi" };
        let ip = Ipv4Repr {
            src_addr: "10.99.0.2".parse().unwrap(),
            dst_addr: "10.99.0.1".parse().unwrap(),
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0; 14 + ip.buffer_len() + icmp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        peer.send(Instant::now(), &buf).unwrap();
    }
    // The first turn asks ARP for the peer (one request), the replies wait.
    lp.turn(Instant::now(), &mut d);
    let mut got = Vec::new();
    peer.recv(Instant::now(), 64, &mut |f| got.push(f.to_vec()));
    assert_eq!(got.len(), 1, "one ARP request for ten parked replies");
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        source_protocol_addr: "10.99.0.2".parse().unwrap(),
        target_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        target_protocol_addr: "10.99.0.1".parse().unwrap(),
    };
    let mut buf = vec![0; 14 + reply.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
        dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut f);
    reply.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    peer.send(Instant::now(), &buf).unwrap();
    lp.turn(Instant::now(), &mut d);
    got.clear();
    peer.recv(Instant::now(), 64, &mut |f| got.push(f.to_vec()));
    assert_eq!(got.len(), 10);
    let r = lp.report().stack.unwrap();
    assert_eq!((r.net.icmp_echo_replies, r.io.rx_packets, r.io.tx_packets), (10, 11, 11));
    assert!(r.to_string().contains(" icmp_echo_replies=10"));
}

#[test]
fn with_rss_known_outbound_ports_are_chosen_so_replies_reach_their_queue() {
    let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let rss = Arc::new(crate::net::rss::RssTable::new(key, (0..128).map(|i| i % 4).collect()).unwrap());
    let (la, _lb) = Loopback::pair(64);
    let dir = FlowDirectory::new(4);
    let mut t = transport(la, host(1)).with_directory(dir, 3, 4).with_rss(Some(rss.clone()));
    let remote = SocketAddr::new(Ipv4Addr::new(10, 99, 0, 2).into(), 5432);
    let local = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));
    for _ in 0..50 {
        let p = t.pick_port(local, remote).expect("a port");
        assert_eq!(rss.queue(remote.ip(), local, 5432, p), 3, "port {p}");
    }
    // IPv6 peers: the same rule over the IPv6 4-tuple.
    let remote6 = SocketAddr::new("fd99::2".parse().unwrap(), 5432);
    let local6: IpAddr = "fd99::1".parse().unwrap();
    for _ in 0..50 {
        let p = t.pick_port(local6, remote6).expect("a port");
        assert_eq!(rss.queue(remote6.ip(), local6, 5432, p), 3, "port {p}");
    }
}

#[test]
fn adaptive_polling_spins_while_frames_come_close_together_and_sleeps_once_they_spread() {
    let t0 = Instant::now();
    let us = Duration::from_micros;
    let poll = Polling {
        rx_batch: 64,
        idle_spin: us(200),
        idle_sleep: us(100_000),
        wake_cost: Some(us(10)),
        busy_poll_below: us(30),
    };
    let mut gaps = ArrivalGaps { avg_ns: 0, last: t0 };
    let mut t = t0;
    // 64 turns `gap` apart, each receiving `frames`.
    let turns_of = |t: &mut Instant, gaps: &mut ArrivalGaps, gap: Duration, frames: usize| {
        for _ in 0..64 {
            *t += gap;
            gaps.arrived(*t, frames, us(40));
        }
    };
    // Frames every 2 µs: spinning is cheaper than a sleep and its wake-up.
    turns_of(&mut t, &mut gaps, us(2), 1);
    assert_eq!(poll.spin(&gaps), Some(us(200)));
    // Every 30 µs: sleep as soon as a turn finds nothing.
    turns_of(&mut t, &mut gaps, us(30), 1);
    assert_eq!(poll.spin(&gaps), Some(Duration::ZERO));
    // A loop that falls behind: turns 30 µs apart (its own sleeps and wake-ups) that
    // each find 8 frames waiting. Frames come every 4 µs: spin, and catch up.
    turns_of(&mut t, &mut gaps, us(30), 8);
    assert_eq!(poll.spin(&gaps), Some(us(200)));
    turns_of(&mut t, &mut gaps, us(30), 1);
    assert_eq!(poll.spin(&gaps), Some(Duration::ZERO));
    // A burst after a long idle spell: the cap (4 × the wake cost) lets the average come
    // back under the wake cost within a few dozen frames, not thousands.
    t += Duration::from_secs(10);
    gaps.arrived(t, 1, us(40));
    let mut turns = 0;
    while poll.spin(&gaps) == Some(Duration::ZERO) {
        t += us(1);
        gaps.arrived(t, 1, us(40));
        turns += 1;
        assert!(turns < 40, "still sleeping after {turns} close frames");
    }
    // polling = "spin": never sleeps.
    assert_eq!(Polling { wake_cost: None, ..poll }.spin(&gaps), None);
}

#[test]
fn busy_polling_follows_the_arrival_gaps_and_zero_means_always() {
    let t0 = Instant::now();
    let us = Duration::from_micros;
    let poll = Polling {
        rx_batch: 64,
        idle_spin: us(200),
        idle_sleep: us(100_000),
        wake_cost: Some(us(10)),
        busy_poll_below: us(30),
    };
    let mut gaps = ArrivalGaps { avg_ns: 0, last: t0 };
    let mut t = t0;
    let turns_of = |t: &mut Instant, gaps: &mut ArrivalGaps, gap: Duration| {
        for _ in 0..64 {
            *t += gap;
            gaps.arrived(*t, 1, us(40));
        }
    };
    // Frames 20 µs apart (a loop that sleeps between them, so no spinning): a busy
    // poll's 20 µs deferral window usually collects the next one.
    turns_of(&mut t, &mut gaps, us(20));
    assert_eq!(poll.spin(&gaps), Some(Duration::ZERO));
    assert!(poll.busy_poll(&gaps));
    // 60 µs apart (light load): no busy polls, so the device's NAPI is not left deferred
    // to wake up for nothing.
    turns_of(&mut t, &mut gaps, us(60));
    assert!(!poll.busy_poll(&gaps));
    // Close again: back on.
    turns_of(&mut t, &mut gaps, us(5));
    assert!(poll.busy_poll(&gaps));
    // busy_poll_gap_us = 0: whenever the ring is empty, however far apart frames come.
    turns_of(&mut t, &mut gaps, us(60));
    assert!(Polling { busy_poll_below: Duration::ZERO, ..poll }.busy_poll(&gaps));
}

#[test]
fn busy_polling_switches_at_most_once_per_dwell() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut sw = BusyPollSwitch { on: false, since: t0 };
    // Too soon after the last switch (start counts as one): still off.
    assert!(!sw.update(true, t0 + ms(5)));
    assert!(sw.update(true, t0 + BUSY_POLL_DWELL));
    // A wish that flips every millisecond moves the switch once per dwell, no more.
    let mut flips = 0;
    let mut last = true;
    for i in 1..=100u64 {
        let on = sw.update(i % 2 == 0, t0 + BUSY_POLL_DWELL + ms(i));
        flips += usize::from(on != last);
        last = on;
    }
    assert!((5..=10).contains(&flips), "{flips} switches in 100 ms");
    // A steady wish is followed once the dwell has passed.
    assert!(!sw.update(false, t0 + ms(200)));
    assert!(!sw.update(false, t0 + ms(300)));
}

#[test]
fn a_spinning_loop_yields_its_cpu_after_an_idle_turn_and_the_adaptive_one_does_not() {
    let us = Duration::from_micros;
    let (mut d, _plane) = dispatch(Router::new());
    let yields = |wake_cost: Option<Duration>, d: &mut Dispatch| {
        let (io, _peer) = Loopback::pair(64);
        let mut t = transport(io, host(1));
        t.poll =
            Polling { rx_batch: 64, idle_spin: us(200), idle_sleep: us(1_000), wake_cost, busy_poll_below: us(30) };
        // A turn with nothing to do, then the wait before the next turn.
        let now = Instant::now();
        assert_eq!(t.turn(now, d), 0);
        t.wait(now, us(1_000));
        // A wait with work pending (timeout zero) never yields.
        t.wait(now, Duration::ZERO);
        t.report().stack.unwrap().turns.spin_yields
    };
    // polling = "spin": the idle turn gives the CPU away once (the busy wait does not).
    assert_eq!(yields(None, &mut d), 1);
    // Adaptive, within its idle spin (frames came close together): spins without yielding.
    assert_eq!(yields(Some(us(10)), &mut d), 0);
}
