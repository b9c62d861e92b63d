//! The packet transport: a [`PacketIo`] queue, our network layer (ARP, ICMP, IPv4) and
//! our TCP engine, carrying HTTP sessions and outbound clients.
//!
//! A turn: frames a full ring left behind go first (order on the wire is kept) → at
//! most `rx_batch` received frames, each through the network layer to the TCP engine
//! (or to the queue that owns its flow) → frames other queues handed over → the network
//! layer's and the engine's timers → the TX flush. Segments are built in place in the
//! sink's frame (a UMEM TX frame on AF_XDP): headers emitted there, the payload gathered
//! there from the session's output — response heads, and bodies still in the arena —
//! and the TCP checksum computed over the frame. A body the arena holds is copied once.
//!
//! Adaptive polling: the loop keeps an average of the gaps between received frames
//! (per frame, over the turns that received any). While frames arrive closer together
//! than a sleep and its wake-up cost
//! (`wake_cost_us`), a turn that finds nothing spins on (for `idle_spin_us` at most);
//! once they arrive further apart, spinning would burn more than sleeping costs, and the
//! loop sleeps in poll(2) on the socket as soon as a turn finds nothing (at most
//! `idle_sleep_ms`, and no later than the next TCP timer). `polling = "spin"` never sleeps.

mod directory;
#[cfg(feature = "dpdk")]
mod dpdk;
mod session;
mod xdp;

pub use directory::FlowDirectory;
#[cfg(feature = "dpdk")]
pub(crate) use dpdk::plan as plan_dpdk;
#[cfg(feature = "dpdk")]
pub use dpdk::DpdkRunning;
pub use session::StackSession;
pub(crate) use xdp::plan;
pub use xdp::XdpRunning;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr};

use super::{Transport, TransportReport};
use crate::app::dispatch::Delivery;
use crate::app::outbound::{ClientPhase, EndReason};
use crate::app::{ClientConn, Dispatch};
use crate::net::rss::RssTable;
use crate::net::{checksum, FrameBatch, NetCounters, NetStack, PartialChecksum, TcpIn, TxSink};
use crate::nic::{FrameUse, IoCounters, PacketIo};
use crate::stats::Histogram;
use crate::tcp::{Census, ConnId, End, Engine, Segment, SegmentOut, State, TcpConfig, TcpCounters};

/// Longest sleep while TCP connections are open.
const TCP_TICK: Duration = Duration::from_millis(10);
/// How long the loop yields when the kernel stops taking TX frames (poll(2) counts whole
/// milliseconds; a received frame ends the wait sooner).
const TX_STALL_WAIT: Duration = Duration::from_millis(1);
/// Frames kept for a full TX ring before the oldest are dropped.
const TX_BACKLOG_MAX: usize = 4096;
/// First local port of outbound connections; each queue takes every `queues`-th one.
const EPHEMERAL_FIRST: u16 = 32768;
const EPHEMERAL_LAST: u16 = 60999;

crate::counters! {
    /// How the loop spent its turns.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct LoopCounters {
        /// Turns that moved at least one frame.
        pub busy_turns: u64,
        /// Turns that found nothing.
        pub idle_turns: u64,
        /// Sleeps in poll(2).
        pub sleeps: u64,
        /// Frames dropped because the TX ring stayed full.
        pub tx_backlog_drops: u64,
        /// Yields because the kernel stopped taking TX frames.
        pub tx_stall_waits: u64,
        /// Idle turns that yielded the CPU (sched_yield) before the next (polling = "spin").
        pub spin_yields: u64,
    }
}

/// What one queue's packet path did.
#[derive(Debug, Clone, Default)]
pub struct StackReport {
    /// Ring counters.
    pub io: IoCounters,
    /// Network-layer counters.
    pub net: NetCounters,
    /// Loop counters.
    pub turns: LoopCounters,
    /// TCP counters.
    pub tcp: TcpCounters,
    /// TCP segments handed to the queue owning their flow, and those dropped (inbox full).
    pub forwarded: (u64, u64),
    /// The connections now, by state, with their RTTs.
    pub census: Census,
    /// The smoothed RTT of each connection that ended.
    pub rtt_at_close: Histogram,
    /// Where the UMEM frames are (AF_XDP).
    pub frames: Option<FrameUse>,
}

impl std::fmt::Display for StackReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (io, n, t, tcp) = (&self.io, &self.net, &self.turns, &self.tcp);
        write!(
            f,
            "rx_packets={} rx_bytes={} tx_packets={} tx_bytes={} icmp_echo_replies={} \
             icmp6_echo_replies={} nd_adverts_sent={} nd_solicits_sent={} nd_learned={} drop_ext_header={} \
             arp_replies_sent={} arp_requests_sent={} arp_learned={} drop_not_for_us={} drop_malformed={} \
             drop_bad_checksum={} drop_unsupported={} drop_not_our_ip={} drop_fragment={} drop_no_route={} \
             drop_arp_unresolved={} tcp_segments={} tx_ring_full={} fill_ring_short={} kernel_rx_dropped={} \
             injected_drops={} wakeups={} busy_polls={} busy_poll_switches={} busy_turns={} idle_turns={} sleeps={} tx_backlog_drops={} tx_stall_waits={} spin_yields={} \
             tcp_established={} tcp_closed={} tcp_reset={} tcp_rto_retransmits={} tcp_fast_retransmits={} \
             tcp_sack_retransmits={} tcp_tlp_probes={} tcp_dsacks_received={} tcp_undos={} tcp_hystart_css={} \
             tcp_keepalive_probes={} tcp_keepalive_timeouts={} tcp_fin_wait2_timeouts={} tcp_persist_timeouts={} \
             tcp_out_of_order={} tcp_syn_cookies_sent={} tcp_syn_cookies_accepted={} tcp_syn_dropped={} \
             tcp_challenge_acks={} tcp_unacceptable={} tcp_forwarded={} tcp_forward_drops={} tx_in_place={} tx_csum_offloaded={} tcp_refused_per_source={}",
            io.rx_packets,
            io.rx_bytes,
            io.tx_packets,
            io.tx_bytes,
            n.icmp_echo_replies,
            n.icmp6_echo_replies,
            n.nd_adverts_sent,
            n.nd_solicits_sent,
            n.nd_learned,
            n.drop_ext_header,
            n.arp_replies_sent,
            n.arp_requests_sent,
            n.arp_learned,
            n.drop_not_for_us,
            n.drop_malformed,
            n.drop_bad_checksum,
            n.drop_unsupported,
            n.drop_not_our_ip,
            n.drop_fragment,
            n.drop_no_route,
            n.drop_arp_unresolved,
            n.tcp_segments,
            io.tx_ring_full,
            io.fill_ring_short,
            io.kernel_rx_dropped,
            io.injected_drops,
            io.wakeups,
            io.busy_polls,
            io.busy_poll_switches,
            t.busy_turns,
            t.idle_turns,
            t.sleeps,
            t.tx_backlog_drops,
            t.tx_stall_waits,
            t.spin_yields,
            tcp.established,
            tcp.closed,
            tcp.reset,
            tcp.rto_retransmits,
            tcp.fast_retransmits,
            tcp.sack_retransmits,
            tcp.tlp_probes,
            tcp.dsacks_received,
            tcp.undos,
            tcp.hystart_css,
            tcp.keepalive_probes,
            tcp.keepalive_timeouts,
            tcp.fin_wait2_timeouts,
            tcp.persist_timeouts,
            tcp.out_of_order,
            tcp.syn_cookies_sent,
            tcp.syn_cookies_accepted,
            tcp.syn_dropped,
            tcp.challenge_acks,
            tcp.unacceptable,
            self.forwarded.0,
            self.forwarded.1,
            io.tx_in_place,
            io.tx_csum_offloaded,
            tcp.refused_per_source,
        )
    }
}

/// Polling settings of a stack transport.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    /// Frames taken per turn at most.
    pub rx_batch: usize,
    /// Spin this long without work before sleeping.
    pub idle_spin: Duration,
    /// Longest sleep.
    pub idle_sleep: Duration,
    /// Adaptive polling: what a sleep and wake-up cost (spin only while frames arrive
    /// closer together than this). None: spin, never sleep.
    pub wake_cost: Option<Duration>,
    /// Busy poll (where the backend can) only while frames arrive closer together than
    /// this on average; zero: whenever the ring is empty.
    pub busy_poll_below: Duration,
}

/// The average gap between received frames: an EWMA (weight 1/8) over turns that
/// received any, each turn contributing the time since the previous such turn divided
/// by the frames it took. Per frame, not per turn: a loop that falls behind takes more
/// frames per turn, so its average falls and it spins until it has caught up (measured
/// per turn, the gaps would include the loop's own sleeps and keep it sleeping). Each
/// gap is capped at 4 × the wake cost so one long idle spell is forgotten within a few
/// turns.
#[derive(Debug, Clone, Copy)]
struct ArrivalGaps {
    avg_ns: u64,
    last: Instant,
}

impl ArrivalGaps {
    fn arrived(&mut self, now: Instant, frames: usize, cap: Duration) {
        let gap = now.saturating_duration_since(self.last).min(cap).as_nanos() as u64 / frames.max(1) as u64;
        self.avg_ns = self.avg_ns - self.avg_ns / 8 + gap / 8;
        self.last = now;
    }
}

impl Polling {
    /// How long a turn that found nothing may spin before sleeping.
    fn spin(&self, gaps: &ArrivalGaps) -> Option<Duration> {
        match self.wake_cost {
            None => None,
            Some(w) if gaps.avg_ns > w.as_nanos() as u64 => Some(Duration::ZERO),
            Some(_) => Some(self.idle_spin),
        }
    }

    /// Whether a turn that finds the RX ring empty busy polls (where the backend can):
    /// while frames arrive closer together than `busy_poll_below`, a busy poll's
    /// deferral window usually has frames to collect; further apart, it would mostly
    /// leave the device's NAPI to wake up for nothing when the window ends.
    fn busy_poll(&self, gaps: &ArrivalGaps) -> bool {
        self.busy_poll_below.is_zero() || gaps.avg_ns < self.busy_poll_below.as_nanos() as u64
    }
}

/// Busy polling's switch: follows the loop's wish (`Polling::busy_poll`) but holds each
/// state at least `BUSY_POLL_DWELL`, so a load near `busy_poll_gap_us` cannot flip the
/// socket option and the interface's deferral (a setsockopt and two sysfs writes) more
/// than a hundred times a second.
#[derive(Debug, Clone, Copy)]
struct BusyPollSwitch {
    on: bool,
    since: Instant,
}

/// The shortest time busy polling stays on or off once switched.
const BUSY_POLL_DWELL: Duration = Duration::from_millis(10);

impl BusyPollSwitch {
    fn update(&mut self, want: bool, now: Instant) -> bool {
        if want != self.on && now.saturating_duration_since(self.since) >= BUSY_POLL_DWELL {
            self.on = want;
            self.since = now;
        }
        self.on
    }
}

/// One queue's packet transport.
pub struct StackTransport<P> {
    io: P,
    net: NetStack,
    out: FrameBatch,
    poll: Polling,
    last_work: Instant,
    /// The last turn moved nothing.
    last_turn_idle: bool,
    gaps: ArrivalGaps,
    busy_poll: BusyPollSwitch,
    counters: LoopCounters,
    engine: Engine<StackSession, Dispatch>,
    caps: ChecksumCapabilities,
    directory: Option<(Arc<FlowDirectory>, usize)>,
    queues: usize,
    me: usize,
    rss: Option<Arc<RssTable>>,
    ip: Ipv4Addr,
    ip6: Option<Ipv6Addr>,
    next_port: u16,
    forwarded: u64,
    forward_drops: u64,
}

impl<P: PacketIo> StackTransport<P> {
    /// A transport over `io` whose engine listens on `port` (if any).
    pub fn new(io: P, net: NetStack, poll: Polling, tcp: TcpConfig, port: Option<u16>, secret: u64) -> Self {
        let now = Instant::now();
        let mut engine = Engine::new(tcp, now, secret);
        let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        engine.set_ts_base(wall.as_millis() as u64);
        if let Some(p) = port {
            engine.listen(p);
        }
        let (ip, ip6) = (net.ip(), net.ip6());
        StackTransport {
            io,
            net,
            out: FrameBatch::default(),
            poll,
            last_work: now,
            last_turn_idle: false,
            gaps: ArrivalGaps { avg_ns: 0, last: now },
            busy_poll: BusyPollSwitch { on: false, since: now },
            counters: LoopCounters::default(),
            engine,
            caps: ChecksumCapabilities::default(),
            directory: None,
            queues: 1,
            me: 0,
            rss: None,
            ip,
            ip6,
            next_port: EPHEMERAL_FIRST,
            forwarded: 0,
            forward_drops: 0,
        }
    }

    /// Shares flow ownership with the other `queues` queues through `dir`; this is
    /// queue `me`. Outbound connections of this queue take local ports ≡ `me` mod
    /// `queues`.
    pub fn with_directory(mut self, dir: Arc<FlowDirectory>, me: usize, queues: usize) -> Self {
        self.engine.track_lifecycle(true);
        self.directory = Some((dir, me));
        self.queues = queues.max(1);
        self.me = me;
        self.next_port = EPHEMERAL_FIRST + me as u16;
        self
    }

    /// The NIC's RSS setting: outbound connections then take a local port whose replies
    /// the NIC steers to this queue (else they are handed over through the directory).
    pub fn with_rss(mut self, rss: Option<Arc<RssTable>>) -> Self {
        self.rss = rss;
        self
    }

    /// Each connection's TCP state, for a failing test or fuzz case to show.
    pub fn describe_connections(&self) -> Vec<String> {
        self.engine.describe()
    }

    /// The I/O backend (for tests).
    pub fn io_mut(&mut self) -> &mut P {
        &mut self.io
    }

    fn sync_directory(&mut self) {
        if let Some((dir, me)) = &self.directory {
            dir.publish(*me, self.engine.take_lifecycle());
        }
    }

    /// Tells outbound clients whose connection ended how it ended; HTTP sessions that
    /// ended are dropped here (cancelling what they waited for).
    fn reap(&mut self, d: &mut Dispatch) {
        for e in self.engine.take_ended() {
            if let StackSession::Client(c) = e.app {
                let why = match (e.state, e.end) {
                    (_, End::Orderly) => None,
                    (State::SynSent, End::Reset) => Some(EndReason::Refused),
                    (_, End::Reset) => Some(EndReason::Reset),
                    (_, End::TimedOut) => Some(EndReason::TimedOut),
                };
                c.ended(why, &mut d.exec().core().outbound.borrow_mut().counters);
            }
        }
    }

    /// A free local port towards `remote`: with the NIC's RSS known, one whose replies
    /// hash to this queue; else one of this queue's share of the range.
    fn pick_port(&mut self, local_ip: IpAddr, remote: SocketAddr) -> Option<u16> {
        if let Some(rss) = &self.rss {
            let span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1;
            for _ in 0..span {
                let p = self.next_port;
                self.next_port = if p >= EPHEMERAL_LAST { EPHEMERAL_FIRST } else { p + 1 };
                let ours = rss.queue(remote.ip(), local_ip, remote.port(), p) == self.me;
                if ours && !self.engine.in_use(SocketAddr::new(local_ip, p), remote) {
                    return Some(p);
                }
            }
            return None;
        }
        let step = self.queues as u16;
        let span = (EPHEMERAL_LAST - EPHEMERAL_FIRST) / step;
        for _ in 0..span {
            let p = self.next_port;
            self.next_port = if p.saturating_add(step) > EPHEMERAL_LAST { p - span * step } else { p + step };
            if !self.engine.in_use(SocketAddr::new(local_ip, p), remote) {
                return Some(p);
            }
        }
        None
    }

    fn open_client(&mut self, c: ClientConn, now: Instant, d: &mut Dispatch, sink: &mut dyn TxSink) {
        let counters = |d: &mut Dispatch, c: &ClientConn, why| {
            c.ended(why, &mut d.exec().core().outbound.borrow_mut().counters);
        };
        if c.abandoned() {
            return counters(d, &c, None);
        }
        let remote = c.addr();
        let local_ip = match remote {
            SocketAddr::V4(_) => IpAddr::V4(self.ip),
            SocketAddr::V6(_) => match self.ip6 {
                Some(ip6) => IpAddr::V6(ip6),
                None => {
                    tracing::debug!("outbound {remote}: no IPv6 address configured (af_xdp.ip6)");
                    return counters(d, &c, Some(EndReason::Failed));
                }
            },
        };
        let Some(port) = self.pick_port(local_ip, remote) else { return counters(d, &c, Some(EndReason::Failed)) };
        let local = SocketAddr::new(local_ip, port);
        let StackTransport { engine, caps, net, .. } = self;
        let app = Some(StackSession::Client(c.clone()));
        match engine.connect_with(local, remote, now, app, &mut |so| emit(caps, so, now, net, sink)) {
            Some(id) => c.connecting(id.0),
            None => counters(d, &c, Some(EndReason::Failed)),
        }
    }

    /// A client the handler wrote to, read from, or dropped.
    fn kick_client(&mut self, c: ClientConn, now: Instant, d: &mut Dispatch, sink: &mut dyn TxSink) {
        let Some(k) = c.key() else { return };
        let id = ConnId(k);
        let StackTransport { engine, caps, net, .. } = self;
        let connecting = c.0.borrow().phase == ClientPhase::Connecting;
        if connecting && c.abandoned() {
            engine.abort(id, &mut |so| emit(caps, so, now, net, sink));
            return;
        }
        engine.kick(id, now, d, &mut |so| emit(caps, so, now, net, sink));
    }
}

/// Hands one checksum-verified segment (located in `frame` by `t`) to the engine, or to
/// the queue that owns its flow.
#[allow(clippy::too_many_arguments)]
fn on_segment(
    engine: &mut Engine<StackSession, Dispatch>,
    directory: &Option<(Arc<FlowDirectory>, usize)>,
    forwarded: &mut (u64, u64),
    caps: &ChecksumCapabilities,
    frame: &[u8],
    t: TcpIn,
    now: Instant,
    net: &mut NetStack,
    d: &mut Dispatch,
    out: &mut dyn TxSink,
) {
    let bytes = &frame[t.start..t.start + t.len];
    if let (Some((dir, me)), true) = (directory, bytes.len() >= 4) {
        let sport = u16::from_be_bytes([bytes[0], bytes[1]]);
        let dport = u16::from_be_bytes([bytes[2], bytes[3]]);
        let (local, remote) = (SocketAddr::new(t.dst, dport), SocketAddr::new(t.src, sport));
        if !engine.knows(local, remote) {
            if let Some(owner) = dir.owner((local, remote)).filter(|o| o != me) {
                if dir.forward(owner, frame) {
                    forwarded.0 += 1;
                } else {
                    forwarded.1 += 1;
                }
                return;
            }
        }
    }
    let packet = TcpPacket::new_unchecked(bytes);
    let mut no_verify = ChecksumCapabilities::ignored();
    no_verify.ipv4 = smoltcp::phy::Checksum::None;
    let Ok(repr) = TcpRepr::parse(&packet, &t.src.into(), &t.dst.into(), &no_verify) else { return };
    let seg = Segment::from_repr(&repr);
    engine.on_segment(now, t.dst, t.src, &seg, d, &mut |so| emit(caps, so, now, net, out));
}

/// Builds IPv4 or IPv6 + TCP for `so` in place in the sink's frame (via the neighbour
/// table): headers emitted, payload gathered from the send queue, then the TCP checksum
/// (over the pseudo-header of the IP version in use) — or, where the sink's transmit
/// path finishes checksums (AF_XDP TX metadata), only the pseudo-header sum, as Linux's
/// own TCP leaves it for the device.
fn emit(caps: &ChecksumCapabilities, so: &SegmentOut<'_>, now: Instant, net: &mut NetStack, out: &mut dyn TxSink) {
    let tcp = so.seg.to_repr();
    let header = tcp.header_len();
    let mut no_tcp_sum = caps.clone();
    no_tcp_sum.tcp = smoltcp::phy::Checksum::None;
    let (src, dst) = (so.src.ip(), so.dst.ip());
    let partial = out.finishes_l4_checksum();
    let tcp_len = header + so.payload.len();
    let segment = |seg: &mut [u8]| {
        // The frame may hold an old frame's bytes; option padding must be zero.
        seg[..header].fill(0);
        let mut t = TcpPacket::new_unchecked(&mut *seg);
        tcp.emit(&mut t, &src.into(), &dst.into(), &no_tcp_sum);
        so.payload.copy_to(&mut seg[header..]);
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp.into(), tcp_len as u32);
        TcpPacket::new_unchecked(&mut *seg).set_checksum(pseudo);
        if !partial {
            PartialChecksum { start: 0, offset: 16 }.finish(seg);
        }
    };
    // The TCP checksum field is 16 bytes into the TCP header.
    let csum = |ip_header: usize| partial.then_some(PartialChecksum { start: ip_header as u16, offset: 16 });
    match (src, dst) {
        (IpAddr::V4(s4), IpAddr::V4(d4)) => {
            let ip = Ipv4Repr {
                src_addr: s4,
                dst_addr: d4,
                next_header: IpProtocol::Tcp,
                payload_len: tcp_len,
                hop_limit: 64,
            };
            let len = ip.buffer_len() + tcp_len;
            net.send_ip_with(dst, len, now, out, csum(ip.buffer_len()), |buf| {
                let mut p = Ipv4Packet::new_unchecked(&mut *buf);
                ip.emit(&mut p, caps);
                segment(p.payload_mut());
            });
        }
        (IpAddr::V6(s6), IpAddr::V6(d6)) => {
            let ip = Ipv6Repr {
                src_addr: s6,
                dst_addr: d6,
                next_header: IpProtocol::Tcp,
                payload_len: tcp_len,
                hop_limit: 64,
            };
            let len = ip.buffer_len() + tcp_len;
            net.send_ip_with(dst, len, now, out, csum(ip.buffer_len()), |buf| {
                let mut p = Ipv6Packet::new_unchecked(&mut *buf);
                ip.emit(&mut p);
                segment(p.payload_mut());
            });
        }
        _ => unreachable!("a connection's addresses are of one family"),
    }
}

/// Sends what the backlog holds until the ring is full; returns frames sent.
fn send_backlog<P: PacketIo>(io: &mut P, out: &mut FrameBatch, now: Instant) -> usize {
    let mut sent = 0;
    for frame in out.iter() {
        if io.send(now, frame).is_err() {
            break;
        }
        sent += 1;
    }
    out.consume(sent);
    sent
}

/// Connections from which a turn prefetches its batch's connection state: below it the
/// state of every connection (≈ 450 bytes each) fits in a core's L2 cache and the
/// prefetch pass would be a hash and a table probe per frame for nothing.
const PREFETCH_FROM_CONNECTIONS: usize = 1024;

impl<P: PacketIo> StackTransport<P> {
    /// Ends the turn's TX: the backlog again, bounded; the kick.
    fn finish_tx(&mut self, now: Instant) -> usize {
        let sent = send_backlog(&mut self.io, &mut self.out, now);
        if self.out.len() > TX_BACKLOG_MAX {
            let extra = self.out.len() - TX_BACKLOG_MAX;
            self.out.consume(extra);
            self.counters.tx_backlog_drops += extra as u64;
        }
        self.io.flush(now);
        sent
    }
}

impl<P: PacketIo> Transport for StackTransport<P> {
    fn wait(&mut self, now: Instant, timeout: Duration) {
        if self.io.tx_stalled() {
            // The kernel stopped taking our frames (in copy mode: until it frees the
            // skbs of earlier ones, in a softirq that may need this very CPU). Spinning
            // on kicks would starve it; yield the CPU briefly instead, then kick again.
            self.io.wait(now, TX_STALL_WAIT);
            self.io.flush(now);
            self.counters.tx_stall_waits += 1;
            return;
        }
        let busy = timeout.is_zero() || !self.out.is_empty();
        let spin = self.poll.spin(&self.gaps);
        if busy || spin.is_none_or(|spin| now.duration_since(self.last_work) < spin) {
            // Busy, or spinning (polling = "spin", or still within the idle spin). With
            // polling = "spin", a turn that found nothing gives the CPU to whatever else
            // is runnable on it first: the kernel thread that receives our frames
            // (threaded NAPI, ksoftirqd) may be waiting on this very CPU, and a loop that
            // never sleeps would hold it off until the scheduler preempts the loop
            // (milliseconds). With nothing else runnable, sched_yield(2) returns at once.
            // The adaptive loop does not: it sleeps when frames stop coming, and yielding
            // in its short spins measured worse (more switches, smaller batches).
            if !busy && spin.is_none() && self.last_turn_idle {
                std::thread::yield_now();
                self.counters.spin_yields += 1;
            }
            return;
        }
        let mut sleep = timeout.min(self.poll.idle_sleep);
        if let Some(due) = self.engine.next_timer_within(now, sleep) {
            sleep = sleep.min(due);
            if sleep.is_zero() {
                return; // a TCP timer is due: run the turn now
            }
        }
        self.io.wait(now, sleep);
        self.counters.sleeps += 1;
    }

    fn has_backlog(&self) -> bool {
        !self.out.is_empty()
    }

    fn turn(&mut self, now: Instant, d: &mut Dispatch) -> usize {
        let StackTransport {
            io,
            net,
            out,
            poll,
            engine,
            caps,
            directory,
            forwarded,
            forward_drops,
            gaps,
            busy_poll,
            ..
        } = self;
        let mut fw = (*forwarded, *forward_drops);
        // Frames a full ring left behind go first, so order on the wire is kept.
        let mut sent = send_backlog(io, out, now);
        if engine.connections() >= PREFETCH_FROM_CONNECTIONS {
            // Start reading every waiting segment's connection before handling the first
            // (with connections far beyond the cache, their misses overlap).
            io.peek(poll.rx_batch, &mut |frame| {
                if let Some((local, remote)) = crate::net::peek_tcp_flow(frame) {
                    engine.prefetch(local, remote);
                }
            });
        }
        io.set_busy_poll(busy_poll.update(poll.busy_poll(gaps), now));
        let received = io.recv_tx(now, poll.rx_batch, out, &mut |frame, sink| {
            if let Some(seg) = net.on_frame(frame, now, sink) {
                on_segment(engine, directory, &mut fw, caps, frame, seg, now, net, d, sink);
            }
        });
        let mut handed = 0;
        sent += io.tx(now, out, &mut |sink| {
            if let Some((dir, me)) = directory.as_ref() {
                for frame in dir.take(*me, poll.rx_batch) {
                    handed += 1;
                    if let Some(seg) = net.on_frame(&frame, now, sink) {
                        on_segment(engine, directory, &mut fw, caps, &frame, seg, now, net, d, sink);
                    }
                }
            }
            net.poll(now, sink);
            engine.poll(now, d, &mut |so| emit(caps, so, now, net, sink));
        });
        (*forwarded, *forward_drops) = fw;
        sent += self.finish_tx(now);
        self.reap(d);
        self.sync_directory();
        let work = received + sent + handed;
        if received + handed > 0 {
            let cap = self.poll.wake_cost.unwrap_or_default() * 4;
            self.gaps.arrived(now, received + handed, cap);
        }
        self.last_turn_idle = work == 0;
        if work > 0 {
            self.counters.busy_turns += 1;
            self.last_work = now;
        } else {
            self.counters.idle_turns += 1;
        }
        work
    }

    fn deliver(&mut self, now: Instant, d: &mut Dispatch, items: Vec<(u64, Delivery)>) {
        let StackTransport { io, net, out, engine, caps, .. } = self;
        let mut items = Some(items);
        io.tx(now, out, &mut |sink| {
            for (k, item) in items.take().into_iter().flatten() {
                let id = ConnId(k);
                if let Some(StackSession::Http(s)) = engine.app_mut(id) {
                    d.deliver(k, s, item);
                    engine.kick(id, now, d, &mut |so| emit(caps, so, now, net, sink));
                }
            }
        });
        self.finish_tx(now);
        self.reap(d);
        self.sync_directory();
        self.last_work = now;
        self.last_turn_idle = false;
    }

    fn outbound(&mut self, now: Instant, d: &mut Dispatch) -> usize {
        let (connects, dirty) = {
            let mut ob = d.exec().core().outbound.borrow_mut();
            if !ob.has_work() {
                return 0;
            }
            (ob.take_connects(), ob.take_dirty())
        };
        let work = connects.len() + dirty.len();
        // The SYNs and segments are built in the backlog; finish_tx sends them.
        let mut out = std::mem::take(&mut self.out);
        for c in connects {
            self.open_client(c, now, d, &mut out);
        }
        for c in dirty {
            self.kick_client(c, now, d, &mut out);
        }
        self.out = out;
        // Publish the new flows before their SYNs leave: the answers may arrive on
        // another queue, which must already know to hand them over.
        self.sync_directory();
        self.finish_tx(now);
        self.reap(d);
        self.sync_directory();
        self.last_work = now;
        self.last_turn_idle = false;
        work
    }

    fn begin_drain(&mut self, now: Instant, d: &mut Dispatch) {
        self.engine.stop_listening();
        let mut ids = Vec::new();
        self.engine.for_each_app(|id, s| {
            if matches!(s, StackSession::Http(_)) {
                ids.push(id);
            }
        });
        let StackTransport { io, net, out, engine, caps, .. } = self;
        io.tx(now, out, &mut |sink| {
            for &id in &ids {
                if let Some(StackSession::Http(s)) = engine.app_mut(id) {
                    d.begin_drain(id.0, s);
                }
                engine.kick(id, now, d, &mut |so| emit(caps, so, now, net, sink));
            }
        });
        self.finish_tx(now);
    }

    fn active(&self) -> usize {
        self.engine.active_connections()
    }

    fn connections(&self) -> usize {
        self.engine.connections()
    }

    fn max_sleep(&self) -> Duration {
        if self.engine.connections() > 0 {
            self.poll.idle_sleep.min(TCP_TICK)
        } else {
            self.poll.idle_sleep
        }
    }

    fn report(&self) -> TransportReport {
        TransportReport {
            refused_over_cap: (0, 0),
            accepted: 0,
            stack: Some(StackReport {
                io: self.io.counters(),
                net: self.net.counters(),
                turns: self.counters,
                tcp: self.engine.counters(),
                forwarded: (self.forwarded, self.forward_drops),
                census: self.engine.census(),
                rtt_at_close: *self.engine.rtt_at_close(),
                frames: self.io.frames(),
            }),
            kernel_conns: None,
        }
    }
}

#[cfg(test)]
mod tests;
