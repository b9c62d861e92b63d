//! Connection table, state machine, timers.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::cc::{Cc, HyEvent};
use super::rtt::Rtt;
use super::sack::{self, AckInfo, Board, Tlp, Undo};
use super::seq::{dist, ge, gt, le, lt};
use super::wheel::{Tick, Wheel};
use super::{Segment, SendQueue, TcpApp, TcpConfig};
use crate::stats::Histogram;

/// A connection handle: slab index and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

impl ConnId {
    fn new(idx: u32, gen: u32) -> Self {
        ConnId(u64::from(gen) << 32 | u64::from(idx))
    }
    fn idx(self) -> u32 {
        self.0 as u32
    }
    fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// RFC 9293 states (LISTEN is the engine's port set; CLOSED is absence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Active open sent SYN.
    SynSent,
    /// SYN received, SYN-ACK sent.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We sent FIN.
    FinWait1,
    /// Our FIN is acknowledged; waiting for theirs.
    FinWait2,
    /// Both sent FIN, ours not yet acknowledged.
    Closing,
    /// Both FINs done; lingering.
    TimeWait,
    /// They sent FIN; we may still send.
    CloseWait,
    /// They sent FIN, then we did.
    LastAck,
}

impl State {
    /// Every state, in the order [`Census::by_state`] counts them.
    pub const ALL: [State; 9] = [
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::Closing,
        State::TimeWait,
        State::CloseWait,
        State::LastAck,
    ];

    /// The state's name as Linux's `ss` prints it, in lower case with underscores.
    pub fn label(self) -> &'static str {
        match self {
            State::SynSent => "syn_sent",
            State::SynReceived => "syn_recv",
            State::Established => "established",
            State::FinWait1 => "fin_wait1",
            State::FinWait2 => "fin_wait2",
            State::Closing => "closing",
            State::TimeWait => "time_wait",
            State::CloseWait => "close_wait",
            State::LastAck => "last_ack",
        }
    }
}

impl TcpCounters {
    fn count_hystart(&mut self, ev: HyEvent) {
        match ev {
            HyEvent::None => {}
            HyEvent::EnteredCss => self.hystart_css += 1,
            HyEvent::BackToSlowStart => self.hystart_spurious += 1,
            HyEvent::EnteredAvoidance => self.hystart_avoidance += 1,
        }
    }
}

/// The engine's connections as they are now (counted on demand: one pass over the
/// connection table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Connections per state, in the order of [`State::ALL`].
    pub by_state: [u64; 9],
    /// The smoothed RTT of every connection that has measured one.
    pub srtt: Histogram,
}

crate::counters! {
    /// Engine counters.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct TcpCounters {
        /// Segments handed to the engine.
        pub segments_in: u64,
        /// Segments emitted.
        pub segments_out: u64,
        /// Connections established.
        pub established: u64,
        /// Connections closed in order (FIN both ways).
        pub closed: u64,
        /// Connections reset (by the peer, by us, or on timeout).
        pub reset: u64,
        /// RSTs sent.
        pub rst_sent: u64,
        /// SYNs (and cookie ACKs) refused with an RST: their source address held
        /// `max_connections_per_source` connections already.
        pub refused_per_source: u64,
        /// Retransmission timeouts that resent data.
        pub rto_retransmits: u64,
        /// Fast-recovery episodes entered (three duplicate ACKs, or RACK found a loss).
        pub fast_retransmits: u64,
        /// Segments retransmitted because the SACK scoreboard (RACK) marked them lost.
        pub sack_retransmits: u64,
        /// Tail loss probes sent (RFC 8985 §7).
        pub tlp_probes: u64,
        /// D-SACK blocks received (RFC 2883: the peer got something twice).
        pub dsacks_received: u64,
        /// Recovery episodes undone as spurious (D-SACK or the timestamp echo).
        pub undos: u64,
        /// First slow starts that HyStart++ ended on a rise of the RTT, before any loss
        /// (RFC 9406: Conservative Slow Start entered).
        pub hystart_css: u64,
        /// Of those, rises that did not last (the RTT fell back: slow start again).
        pub hystart_spurious: u64,
        /// Conservative Slow Starts that ran their rounds into congestion avoidance.
        pub hystart_avoidance: u64,
        /// Keep-alive probes sent.
        pub keepalive_probes: u64,
        /// Connections reset after unanswered keep-alive probes.
        pub keepalive_timeouts: u64,
        /// Zero-window probes sent.
        pub window_probes: u64,
        /// Out-of-order segments stored.
        pub out_of_order: u64,
        /// Segments outside the window (answered with an ACK, dropped).
        pub unacceptable: u64,
        /// Segments rejected by PAWS.
        pub paws_rejected: u64,
        /// Challenge ACKs sent (RFC 5961).
        pub challenge_acks: u64,
        /// SYN-ACKs sent as cookies.
        pub syn_cookies_sent: u64,
        /// Connections made from a valid cookie.
        pub syn_cookies_accepted: u64,
        /// ACKs for unknown connections with a bad cookie.
        pub syn_cookies_invalid: u64,
        /// SYNs dropped (no cookies and a full queue, or the table full).
        pub syn_dropped: u64,
        /// Half-open connections given up after SYN-ACK retries.
        pub syn_timeouts: u64,
        /// Idle connections closed.
        pub idle_closed: u64,
        /// Connections reset in FIN-WAIT-2: our FIN acknowledged, theirs not sent within
        /// `fin_wait2_timeout_ms`.
        pub fin_wait2_timeouts: u64,
        /// Connections reset because the peer kept its window closed on data we had to send
        /// for `persist_timeout_ms`.
        pub persist_timeouts: u64,
    }
}

/// A segment to send, with its addresses.
#[derive(Debug, Clone, Copy)]
pub struct SegmentOut<'a> {
    /// Our address.
    pub src: SocketAddr,
    /// Theirs.
    pub dst: SocketAddr,
    /// The segment; its `payload` field is empty: the data is in [`payload`](Self::payload).
    pub seg: Segment<'a>,
    /// The data, still in the application's send queue.
    pub payload: Payload<'a>,
}

/// Data of an outgoing segment: a range of the application's send queue, copied by the
/// caller straight into the frame it builds.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    queue: Option<&'a dyn SendQueue>,
    off: usize,
    len: usize,
}

impl Payload<'_> {
    /// No data.
    pub const NONE: Payload<'static> = Payload { queue: None, off: 0, len: 0 };

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the segment carries no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the data into `dst` (exactly [`len`](Self::len) bytes long).
    pub fn copy_to(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.len, "payload destination of the wrong size");
        if let Some(q) = self.queue {
            q.copy_out(self.off, dst);
        }
    }

    /// The data as a vector (tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.copy_to(&mut v);
        v
    }
}

impl<'a> Payload<'a> {
    fn of(queue: &'a dyn SendQueue, off: usize, len: usize) -> Payload<'a> {
        Payload { queue: Some(queue), off, len }
    }
}

impl std::fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes at {})", self.len, self.off)
    }
}

/// One end of a connection, compact: the address as 16 bytes (IPv4 as IPv4-mapped) and
/// the port — 18 bytes where a `SocketAddr` takes 32, in the table entry and in every
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ep {
    ip: [u8; 16],
    port: u16,
}

impl Ep {
    fn of(a: SocketAddr) -> Ep {
        let ip = match a.ip() {
            IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            IpAddr::V6(v) => v.octets(),
        };
        Ep { ip, port: a.port() }
    }

    fn is_ipv6(&self) -> bool {
        self.ip[..12] != [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
    }

    fn addr(&self) -> SocketAddr {
        let v6 = std::net::Ipv6Addr::from(self.ip);
        match (self.is_ipv6(), v6.to_ipv4_mapped()) {
            (false, Some(v4)) => SocketAddr::new(v4.into(), self.port),
            _ => SocketAddr::new(v6.into(), self.port),
        }
    }

    fn port(&self) -> u16 {
        self.port
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple {
    local: Ep,
    remote: Ep,
}

impl Tuple {
    fn new(local: SocketAddr, remote: SocketAddr) -> Tuple {
        Tuple { local: Ep::of(local), remote: Ep::of(remote) }
    }
}

/// Hashed as one 128-bit word for IPv4 (addresses and ports packed) and three for IPv6:
/// few writes into [`TupleHasher`], on the path of every segment.
impl Hash for Tuple {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (l, r) = (&self.local, &self.remote);
        if !l.is_ipv6() {
            let v4 = |e: &Ep| u128::from(u32::from_be_bytes([e.ip[12], e.ip[13], e.ip[14], e.ip[15]]));
            h.write_u128(v4(l) << 96 | u128::from(l.port) << 80 | v4(r) << 16 | u128::from(r.port));
        } else {
            h.write_u128(u128::from_be_bytes(l.ip));
            h.write_u128(u128::from_be_bytes(r.ip));
            h.write_u32(u32::from(l.port) << 16 | u32::from(r.port));
        }
    }
}

/// The connection table's hasher: a folded multiply keyed with per-engine secrets (the
/// construction of foldhash and aHash's fallback). The tuple is chosen by remote peers,
/// so the hash must be keyed (a fixed one lets an attacker pile connections into one
/// bucket); SipHash, the std default, cost about 400 instructions per segment here
/// (scripts/profile.sh), this costs a few dozen.
#[derive(Clone, Copy)]
struct TupleKeys([u64; 3]);

impl TupleKeys {
    /// Fresh random keys (from std's per-process random hash keys, not from the SYN
    /// cookie secret, which must not be derivable from anything else).
    fn random() -> TupleKeys {
        use std::hash::BuildHasher;
        // splitmix64 steps: three well-mixed keys from one random word.
        let mut z = std::collections::hash_map::RandomState::new().hash_one(0x0074_7570_6c65_u64);
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        TupleKeys([next(), next(), next()])
    }
}

impl std::hash::BuildHasher for TupleKeys {
    type Hasher = TupleHasher;
    fn build_hasher(&self) -> TupleHasher {
        TupleHasher { keys: self.0, acc: self.0[0] }
    }
}

/// See [`TupleKeys`].
struct TupleHasher {
    keys: [u64; 3],
    acc: u64,
}

/// The high and low halves of the 128-bit product, folded.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for TupleHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.acc = folded_multiply(self.acc ^ v, self.keys[1]);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u128(&mut self, v: u128) {
        self.acc = folded_multiply(self.acc ^ v as u64, ((v >> 64) as u64) ^ self.keys[1]);
    }
    fn finish(&self) -> u64 {
        folded_multiply(self.acc, self.keys[2])
    }
}

struct Conn<A> {
    gen: u32,
    tuple: Tuple,
    state: State,
    app: Option<A>,
    // send side
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    snd_max: u32,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    snd_wscale: u8,
    mss: u32,
    cwnd: u32,
    ssthresh: u32,
    dupacks: u32,
    recover: Option<u32>,
    rtt: Rtt,
    rtt_seq: Option<(u32, Tick)>,
    backoff: u32,
    fin_seq: Option<u32>,
    // receive side
    irs: u32,
    rcv_nxt: u32,
    rcv_wscale: u8,
    rcv_adv: u32,
    ooo: Vec<(u32, Vec<u8>)>,
    ooo_fin: Option<u32>,
    ts_ok: bool,
    ts_recent: u32,
    unacked_segs: u32,
    ack_now: bool,
    // timers (engine ticks)
    rtx_at: Option<Tick>,
    delack_at: Option<Tick>,
    end_at: Option<Tick>,
    last_active: Tick,
    wheel_at: Option<Tick>,
    from_cookie: bool,
    /// We opened it (keep-alive uses `keepalive_outbound_idle_ms`).
    outbound: bool,
    /// SACK was negotiated.
    sack_ok: bool,
    /// The last output was limited by cwnd (only then does cwnd grow).
    cwnd_limited: bool,
    /// The scoreboard: present only while a SACK connection has data in flight.
    board: Option<Box<Board>>,
    cc: Cc,
    /// Lowest RTT seen, µs (RACK.min_RTT; u32::MAX before a sample).
    min_rtt_us: u32,
    /// RACK: reordering seen on this connection.
    reordering_seen: bool,
    /// RACK.reo_wnd_mult (RFC 8985 §6.2 step 4).
    reo_wnd_mult: u8,
    /// Loss recoveries since reo_wnd_mult was last raised (reset after 16).
    reo_recoveries: u8,
    /// Keep-alive probes sent without an answer.
    ka_probes: u8,
    /// When the peer's window closed on data we have to send (persist timer running).
    zero_since: Option<Tick>,
    /// The engine closed the connection itself (idle): data arriving now gets an RST.
    closed_by_us: bool,
    /// A duplicate we received, reported first in the next ACK (RFC 2883).
    dsack_out: Option<(u32, u32)>,
    /// Start of the out-of-order segment received last (its block goes first).
    sack_last: Option<u32>,
    /// The TLP or RACK reordering timer.
    probe_at: Option<Tick>,
    probe_is_tlp: bool,
    /// The keep-alive timer.
    ka_at: Option<Tick>,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// FIN exchange (or TIME-WAIT expiry, idle close).
    Orderly,
    /// A RST arrived (or we aborted).
    Reset,
    /// Retransmissions (of the SYN, or of data) ran out.
    TimedOut,
}

/// A connection that ended, with its application.
pub struct Ended<A> {
    /// Its id.
    pub id: ConnId,
    /// Its application.
    pub app: A,
    /// How it ended.
    pub end: End,
    /// Its state when it ended (`SynSent`: it was never established).
    pub state: State,
}

/// One core's TCP engine.
pub struct Engine<A, C> {
    cfg: TcpConfig,
    epoch: Instant,
    /// The cookie slot of the last SYN cookie sent (0: none yet). A valid cookie is from
    /// this slot or the one before, so an ACK is hashed as a cookie only up to the slot
    /// after the last cookie sent (as Linux does): outside a SYN flood, an ACK flood to
    /// the listener costs no hashing.
    last_cookie_slot: u64,
    wheel: Wheel,
    /// The connection table: slab indices, found by the hash of the 4-tuple and compared
    /// against the tuple the connection holds. Four bytes an entry (a map from tuple to
    /// index took 40, and 5 MB of table at 100k connections pushed the connections out of
    /// the cache); the connection's own cache line, which a lookup then reads, is needed
    /// for the segment anyway.
    table: hashbrown::HashTable<u32>,
    keys: TupleKeys,
    /// Accepted connections per remote address (kept only with a per-source cap).
    per_source: HashMap<IpAddr, u32>,
    slab: Vec<Option<Conn<A>>>,
    gens: Vec<u32>,
    free: Vec<u32>,
    listening: HashSet<u16>,
    half_open: usize,
    secret: u64,
    counters: TcpCounters,
    /// The smoothed RTT of each connection when it ended (those that measured one).
    rtt_at_close: Histogram,
    lifecycle: Vec<(SocketAddr, SocketAddr, bool)>,
    track_lifecycle: bool,
    ended: Vec<Ended<A>>,
    ts_base: u32,
    /// The last `now` converted to engine time and the result in µs: every call on one
    /// segment passes the same `now`, so one subtraction serves them all.
    clock: std::cell::Cell<(Instant, u64)>,
    /// Emptied scoreboards kept for the next flights (at most `SPARE_BOARDS`): a
    /// request-response connection starts and ends a flight per request, and allocating
    /// and freeing the board (and its records) each time cost ≈ 370 instructions a request.
    // Boxed as connections hold them: a board moves between the two as it is.
    #[allow(clippy::vec_box)]
    spare_boards: Vec<Box<Board>>,
    _cx: std::marker::PhantomData<fn(&mut C)>,
}

/// Spare scoreboards an engine keeps at most (each a few hundred bytes).
const SPARE_BOARDS: usize = 64;

/// MSS values a cookie can carry (3 bits).
const COOKIE_MSS: [u16; 8] = [536, 1200, 1220, 1360, 1400, 1440, 1452, 1460];
/// Cookie time slot: 64 s; a cookie is valid in its slot and the next.
const COOKIE_SLOT_SECS: u64 = 64;
const OOO_MAX_SEGMENTS: usize = 64;
/// Low bits of a cookie SYN-ACK's TSval that carry the SYN's options.
const COOKIE_TS_MASK: u32 = 0x1f;
/// Allowance for the peer's delayed ACK in the probe timeout when a single segment is
/// outstanding (RFC 8985 §7.2's WCDelAckT; Linux's clients delay at most 40 ms in
/// quick-ack mode, 200 ms at worst).
const TLP_DELACK_MS: u64 = 50;
/// The shortest probe timeout (two ticks of our millisecond timer, as Linux's
/// TCP_TIMEOUT_MIN).
const TLP_MIN_MS: u64 = 2;

/// TSval bits for a cookie: window shift (0..=14; 15 = none) and SACK.
fn cookie_ts_bits(wscale: Option<u8>, sack: bool) -> u32 {
    u32::from(wscale.map_or(15, |w| w.min(14))) | u32::from(sack) << 4
}

/// The options a cookie TSval carried, from the peer's echo of it.
fn cookie_ts_options(tsecr: u32) -> (Option<u8>, bool) {
    let ws = (tsecr & 0xf) as u8;
    ((ws != 15).then_some(ws), tsecr & 0x10 != 0)
}

impl<A, C> Engine<A, C> {
    /// An engine whose clock starts at `now`. `secret` keys ISNs and SYN cookies.
    pub fn new(cfg: TcpConfig, now: Instant, secret: u64) -> Self {
        Engine {
            cfg,
            epoch: now,
            last_cookie_slot: 0,
            wheel: Wheel::new(0),
            table: hashbrown::HashTable::new(),
            keys: TupleKeys::random(),
            per_source: HashMap::new(),
            slab: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            listening: HashSet::new(),
            half_open: 0,
            secret,
            counters: TcpCounters::default(),
            rtt_at_close: Histogram::default(),
            lifecycle: Vec::new(),
            track_lifecycle: false,
            ended: Vec::new(),
            ts_base: 0,
            clock: std::cell::Cell::new((now, 0)),
            spare_boards: Vec::new(),
            _cx: std::marker::PhantomData,
        }
    }

    /// How long until the engine's next timer, if one is due within `limit` (the loop
    /// sleeps no longer than this, so a probe or RACK timer of a few milliseconds is not
    /// held up by a longer poll(2)).
    pub fn next_timer_within(&self, now: Instant, limit: Duration) -> Option<Duration> {
        let horizon = (limit.as_millis() as u64).max(1) + self.tick(now).saturating_sub(self.wheel.now());
        let at = self.wheel.next_within(horizon)?;
        Some((self.epoch + Duration::from_millis(at)).saturating_duration_since(now))
    }

    /// Offsets our TCP timestamps by `wall_ms` (the wall clock in milliseconds when the
    /// engine started), so they keep growing across restarts: a peer holding a
    /// TIME-WAIT for a 4-tuple we reuse accepts our new SYN only if its timestamp is
    /// newer (RFC 7323 §5, RFC 6191).
    pub fn set_ts_base(&mut self, wall_ms: u64) {
        self.ts_base = wall_ms as u32;
    }

    /// Accepts connections on `port`.
    pub fn listen(&mut self, port: u16) {
        self.listening.insert(port);
    }

    /// Stops accepting connections on every port (new SYNs get RST).
    pub fn stop_listening(&mut self) {
        self.listening.clear();
    }

    /// Connections that still have work: any state but TIME-WAIT.
    pub fn active_connections(&self) -> usize {
        self.slab.iter().flatten().filter(|c| c.state != State::TimeWait).count()
    }

    /// Each connection's state, its peer's port and its send and receive positions, for
    /// a failing test or fuzz case to show what was left.
    pub fn describe(&self) -> Vec<String> {
        self.slab
            .iter()
            .flatten()
            .map(|c| {
                format!(
                    "{:?} peer port {} snd_una {} snd_nxt {} snd_wnd {} rcv_nxt {}",
                    c.state,
                    c.tuple.remote.port(),
                    c.snd_una,
                    c.snd_nxt,
                    c.snd_wnd,
                    c.rcv_nxt
                )
            })
            .collect()
    }

    /// Calls `f` on every connection's application (graceful shutdown).
    pub fn for_each_app(&mut self, mut f: impl FnMut(ConnId, &mut A)) {
        for (idx, c) in self.slab.iter_mut().enumerate() {
            if let Some(app) = c.as_mut().and_then(|c| c.app.as_mut().map(|a| (c.gen, a))) {
                f(ConnId::new(idx as u32, app.0), app.1);
            }
        }
    }

    /// Records connection creation and removal for [`take_lifecycle`](Self::take_lifecycle).
    pub fn track_lifecycle(&mut self, on: bool) {
        self.track_lifecycle = on;
    }

    /// Counters so far.
    pub fn counters(&self) -> TcpCounters {
        self.counters
    }

    /// True if the engine has a connection for this 4-tuple.
    pub fn knows(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.lookup(&Tuple::new(local, remote)).is_some()
    }

    /// Connections created (`true`) and removed (`false`) since the last call, as
    /// (local, remote): lets the caller keep a flow directory across engines.
    pub fn take_lifecycle(&mut self) -> Vec<(SocketAddr, SocketAddr, bool)> {
        std::mem::take(&mut self.lifecycle)
    }

    /// Connections in the table (any state).
    pub fn connections(&self) -> usize {
        self.table.len()
    }

    /// Counts the connections by state and their smoothed RTTs: one pass over the
    /// table, for the admin view (never on the data path).
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for c in self.slab.iter().flatten() {
            let i = State::ALL.iter().position(|&s| s == c.state).unwrap_or(0);
            census.by_state[i] += 1;
            if let Some(srtt) = c.rtt.srtt() {
                census.srtt.record(srtt);
            }
        }
        census
    }

    /// The smoothed RTT of every connection that ended, when it ended.
    pub fn rtt_at_close(&self) -> &Histogram {
        &self.rtt_at_close
    }

    /// The state of connection `id`, if it exists.
    pub fn state(&self, id: ConnId) -> Option<State> {
        self.conn(id).map(|c| c.state)
    }

    /// The application of connection `id`.
    pub fn app_mut(&mut self, id: ConnId) -> Option<&mut A> {
        self.conn_mut(id).and_then(|c| c.app.as_mut())
    }

    /// Smoothed RTT of `id`, once measured.
    pub fn srtt(&self, id: ConnId) -> Option<Duration> {
        self.conn(id).and_then(|c| c.rtt.srtt())
    }

    /// Bytes of engine state per connection (without application buffers).
    pub fn conn_state_bytes() -> usize {
        // The table's slot and control byte, the generation.
        std::mem::size_of::<Option<Conn<A>>>() + std::mem::size_of::<u32>() + 1 + std::mem::size_of::<u32>()
    }

    /// Internal state of `id`, for test diagnostics.
    #[cfg(test)]
    pub fn debug(&self, id: ConnId) -> String {
        let Some(c) = self.conn(id) else { return "gone".into() };
        format!(
            "{:?} una={} nxt={} max={} wnd={} cwnd={} ssth={} rtx_at={:?} wheel_at={:?} end_at={:?} delack={:?} backoff={} rcv_nxt={} rcv_adv={} ooo={} wheel_now={} fin_seq={:?} recover={:?}",
            c.state, c.snd_una.wrapping_sub(c.iss), c.snd_nxt.wrapping_sub(c.iss), c.snd_max.wrapping_sub(c.iss), c.snd_wnd, c.cwnd, c.ssthresh,
            c.rtx_at, c.wheel_at, c.end_at, c.delack_at, c.backoff, c.rcv_nxt.wrapping_sub(c.irs), c.rcv_adv.wrapping_sub(c.irs), c.ooo.len(), self.wheel.now(), c.fin_seq, c.recover
        )
    }

    /// (cwnd, ssthresh, SACK negotiated, scoreboard records) of `id`, for tests.
    #[cfg(test)]
    pub fn cc_state(&self, id: ConnId) -> Option<(u32, u32, bool, usize)> {
        self.conn(id).map(|c| (c.cwnd, c.ssthresh, c.sack_ok, c.board.as_ref().map_or(0, |b| b.len())))
    }

    /// The slab index and generation of the connection with tuple `t`.
    fn lookup(&self, t: &Tuple) -> Option<(u32, u32)> {
        let slab = &self.slab;
        let mut gen = 0;
        let idx = self.table.find(self.keys.hash_one(t), |&i| match &slab[i as usize] {
            Some(c) if c.tuple == *t => {
                gen = c.gen;
                true
            }
            _ => false,
        })?;
        Some((*idx, gen))
    }

    fn conn(&self, id: ConnId) -> Option<&Conn<A>> {
        self.slab.get(id.idx() as usize)?.as_ref().filter(|c| c.gen == id.gen())
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn<A>> {
        self.slab.get_mut(id.idx() as usize)?.as_mut().filter(|c| c.gen == id.gen())
    }

    fn tick(&self, now: Instant) -> Tick {
        self.us(now) / 1000
    }

    /// The engine clock in µs (RACK's transmission times and RTTs).
    fn us(&self, now: Instant) -> u64 {
        let (last, us) = self.clock.get();
        if last == now {
            return us;
        }
        let us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        self.clock.set((now, us));
        us
    }

    fn ts_now(&self, now: Instant) -> u32 {
        (self.tick(now) as u32).wrapping_add(self.ts_base).wrapping_add(1)
    }

    fn hash(&self, parts: &[u64]) -> u64 {
        let mut h = DefaultHasher::new();
        self.secret.hash(&mut h);
        parts.hash(&mut h);
        h.finish()
    }

    /// The 4-tuple as words for the keyed hash (IPv4 as IPv4-mapped IPv6).
    fn tuple_words(t: &Tuple) -> [u64; 6] {
        let w = |a: &Ep| {
            let (hi, lo) = a.ip.split_at(8);
            [
                u64::from_be_bytes(hi.try_into().expect("8 bytes")),
                u64::from_be_bytes(lo.try_into().expect("8 bytes")),
                u64::from(a.port()),
            ]
        };
        let (l, r) = (w(&t.local), w(&t.remote));
        [l[0], l[1], l[2], r[0], r[1], r[2]]
    }

    /// Bytes the IP header takes beyond IPv4's 20: the MSS we can carry shrinks by as
    /// much on IPv6 (1440 on a 1500-byte MTU).
    fn ip_extra(t: &Tuple) -> u16 {
        if t.local.is_ipv6() {
            20
        } else {
            0
        }
    }

    /// RFC 6528 ISN: keyed hash of the 4-tuple plus a 4 µs clock.
    fn iss(&self, t: &Tuple, now: Instant) -> u32 {
        let clock = (now.saturating_duration_since(self.epoch).as_micros() / 4) as u32;
        (self.hash(&Self::tuple_words(t)) as u32).wrapping_add(clock)
    }

    fn cookie(&self, t: &Tuple, peer_isn: u32, slot: u64, mss_idx: u32) -> u32 {
        let [a, b, c, d, e, f] = Self::tuple_words(t);
        let mac = self.hash(&[a, b, c, d, e, f, u64::from(peer_isn), slot, u64::from(mss_idx)]) as u32 & 0x00ff_ffff;
        ((slot as u32 & 0x1f) << 27) | (mss_idx << 24) | mac
    }

    fn cookie_slot(now: Instant, epoch: Instant) -> u64 {
        // A fixed offset keeps slot 0 away from the epoch so "previous slot" exists.
        now.saturating_duration_since(epoch).as_secs() / COOKIE_SLOT_SECS + 32
    }
}

/// Where emitted segments go.
pub type Tx<'t> = dyn FnMut(&SegmentOut<'_>) + 't;

impl<A, C> Engine<A, C> {
    fn emit(&mut self, tx: &mut Tx<'_>, src: Ep, dst: Ep, seg: Segment<'_>) {
        self.counters.segments_out += 1;
        tx(&SegmentOut { src: src.addr(), dst: dst.addr(), seg, payload: Payload::NONE });
    }

    /// RST in answer to `seg` for a connection we do not have (RFC 9293 §3.10.7.1).
    fn reset_for(&mut self, local: Ep, remote: Ep, seg: &Segment<'_>, tx: &mut Tx<'_>) {
        if seg.rst {
            return;
        }
        let out = match seg.ack {
            Some(ack) => {
                Segment { src_port: local.port(), dst_port: remote.port(), seq: ack, rst: true, ..Default::default() }
            }
            None => Segment {
                src_port: local.port(),
                dst_port: remote.port(),
                seq: 0,
                ack: Some(seg.seq.wrapping_add(seg.seq_len())),
                rst: true,
                ..Default::default()
            },
        };
        self.counters.rst_sent += 1;
        self.emit(tx, local, remote, out);
    }
}

impl<A> Conn<A> {
    fn synchronized(&self) -> bool {
        !matches!(self.state, State::SynSent | State::SynReceived)
    }

    fn next_deadline(&self) -> Option<Tick> {
        [self.rtx_at, self.delack_at, self.end_at, self.probe_at, self.ka_at].into_iter().flatten().min()
    }

    /// Bytes in the network by the scoreboard's count (RFC 6675 pipe), else the flight.
    fn pipe(&self) -> u32 {
        match &self.board {
            Some(b) => b.pipe(self.flight()),
            None => self.flight(),
        }
    }

    fn flight(&self) -> u32 {
        dist(self.snd_una, self.snd_nxt)
    }

    /// A segment of this connection at `seq` carrying `payload` bytes, with ACK, window
    /// and timestamps filled in, and as many SACK blocks (most important first) as fit
    /// beside the payload in one MSS: a segment sized before more blocks were due (a
    /// retransmission of a recorded range, a fast retransmit) drops the blocks that no
    /// longer fit rather than exceed the MTU.
    fn segment<'p>(&self, seq: u32, window: u16, ts_now: u32, payload: usize) -> Segment<'p> {
        let mut sack = if self.sack_ok && (!self.ooo.is_empty() || self.dsack_out.is_some()) {
            sack::blocks(&self.ooo, self.sack_last, self.dsack_out)
        } else {
            [None; 3]
        };
        let room = (self.mss as usize).saturating_sub(payload);
        let fits = (0..=sack.len()).rev().find(|&n| self.sack_bytes(n as u32) as usize <= room).unwrap_or(0);
        for b in sack.iter_mut().skip(fits) {
            *b = None;
        }
        Segment {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq,
            ack: Some(self.rcv_nxt),
            window,
            ts: self.ts_ok.then_some((ts_now, self.ts_recent)),
            sack,
            ..Default::default()
        }
    }

    /// Option bytes `n` SACK blocks take beyond what the MSS already leaves for options
    /// (the timestamps' 12).
    fn sack_bytes(&self, n: u32) -> u32 {
        match (n, self.ts_ok) {
            (0, _) => 0,
            (n, true) => 8 * n,
            (n, false) => 8 * n + 4,
        }
    }

    /// Option bytes the SACK blocks of our next segment take beyond what the MSS
    /// already leaves for options.
    fn sack_extra(&self) -> u32 {
        if !self.sack_ok || (self.ooo.is_empty() && self.dsack_out.is_none()) {
            return 0;
        }
        self.sack_bytes(sack::blocks(&self.ooo, self.sack_last, self.dsack_out).iter().flatten().count() as u32)
    }

    /// Records data sent for the first time on a SACK connection.
    // The boxes move between connections and the spare list as they are.
    #[allow(clippy::vec_box)]
    fn record_sent(&mut self, start: u32, used: u32, now_us: u64, fin: bool, spare: &mut Vec<Box<Board>>) {
        // The scoreboard must cover the whole flight: one starts only with nothing
        // outstanding before it (else the connection recovers the NewReno way until
        // its flight drains).
        if self.board.is_none() && start != self.snd_una {
            return;
        }
        if self.sack_ok && used > 0 {
            let board = self.board.get_or_insert_with(|| spare.pop().unwrap_or_default());
            board.sent_new(start, start.wrapping_add(used), now_us, fin);
        }
    }
}

/// Emits `seg` on the connection with 4-tuple `t`.
fn send_on(counters: &mut TcpCounters, tx: &mut Tx<'_>, t: Tuple, seg: Segment<'_>) {
    send_data(counters, tx, t, seg, Payload::NONE);
}

fn send_data(counters: &mut TcpCounters, tx: &mut Tx<'_>, t: Tuple, seg: Segment<'_>, payload: Payload<'_>) {
    counters.segments_out += 1;
    tx(&SegmentOut { src: t.local.addr(), dst: t.remote.addr(), seg, payload });
}

/// Records the right window edge a sent segment advertised (it never moves left).
fn advertise<A>(c: &mut Conn<A>, adv: u32) {
    if gt(adv, c.rcv_adv) {
        c.rcv_adv = adv;
    }
}

impl<C, A: TcpApp<C>> Engine<A, C> {
    /// Handles one segment from `remote` to `local` (checksum already verified).
    pub fn on_segment(
        &mut self,
        now: Instant,
        local_ip: IpAddr,
        remote_ip: IpAddr,
        seg: &Segment<'_>,
        cx: &mut C,
        tx: &mut Tx<'_>,
    ) {
        self.counters.segments_in += 1;
        let t = Tuple::new(SocketAddr::new(local_ip, seg.dst_port), SocketAddr::new(remote_ip, seg.src_port));
        self.advance(now, cx, tx);
        match self.lookup(&t) {
            Some((idx, gen)) => {
                let id = ConnId::new(idx, gen);
                if seg.syn
                    && seg.ack.is_none()
                    && self.slab[idx as usize]
                        .as_ref()
                        .is_some_and(|c| c.state == State::TimeWait && gt(seg.seq, c.rcv_nxt))
                    && self.listening.contains(&t.local.port())
                {
                    // RFC 9293 §3.6.1 / RFC 6191: a new SYN above the old window reopens.
                    self.remove(id, End::Orderly);
                    return self.on_listen(now, t, seg, cx, tx);
                }
                self.on_conn(id, now, seg, cx, tx);
                self.finish(id, now, cx, tx);
            }
            None => self.on_listen(now, t, seg, cx, tx),
        }
    }

    /// Starts reading the state of the connection a segment from `remote` to `local` is
    /// for into the cache, without handling it. A caller holding a batch of segments
    /// calls this for each before handling the first: with more connections than the
    /// cache holds, each segment's state is a string of cache misses, and started
    /// together they overlap. Costs a hash and a table probe (the table is small enough
    /// to stay cached); wrong or absent connections cost nothing more.
    pub fn prefetch(&self, local: SocketAddr, remote: SocketAddr) {
        let t = Tuple::new(local, remote);
        for &idx in self.table.iter_hash(self.keys.hash_one(t)) {
            if let Some(slot) = self.slab.get(idx as usize) {
                crate::mem::prefetch(slot, std::mem::size_of::<Option<Conn<A>>>());
            }
        }
    }

    /// Fires due timers (call once per loop turn).
    pub fn poll(&mut self, now: Instant, cx: &mut C, tx: &mut Tx<'_>) {
        self.advance(now, cx, tx);
    }

    /// Sends what connection `id`'s application has queued (after it produced output
    /// outside `received`, e.g. a control-thread answer).
    pub fn kick(&mut self, id: ConnId, now: Instant, cx: &mut C, tx: &mut Tx<'_>) {
        let cfg = &self.cfg;
        if let Some(c) = self.slab.get_mut(id.idx() as usize).and_then(Option::as_mut).filter(|c| c.gen == id.gen()) {
            // The application took buffered bytes: if that opens the window by half or
            // more, say so now (RFC 9293 §3.8.6.2.2) rather than leave the peer to its
            // zero-window probes.
            let (_, adv) = Self::window_calc(cfg, c);
            if c.synchronized() && gt(adv, c.rcv_adv) && dist(c.rcv_adv, adv) >= cfg.recv_window_bytes / 2 {
                c.ack_now = true;
            }
        }
        if self.conn(id).is_some() {
            self.output(id, now, tx);
            self.finish(id, now, cx, tx);
        }
    }

    /// Opens a connection from `local` to `remote` (SYN sent at once); `A::open` makes
    /// its application once it is established.
    pub fn connect(&mut self, local: SocketAddr, remote: SocketAddr, now: Instant, tx: &mut Tx<'_>) -> Option<ConnId> {
        self.connect_with(local, remote, now, None, tx)
    }

    /// As [`connect`](Self::connect), with the connection's application given now (an
    /// outbound client whose handler waits on it).
    pub fn connect_with(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        app: Option<A>,
        tx: &mut Tx<'_>,
    ) -> Option<ConnId> {
        let t = Tuple::new(local, remote);
        if self.lookup(&t).is_some() {
            return None;
        }
        let iss = self.iss(&t, now);
        let mut conn = self.new_conn(t, State::SynSent, iss, 0, now);
        conn.app = app;
        let id = self.insert(conn);
        self.send_syn(id, now, tx);
        self.arm_rtx(id, now);
        self.reschedule(id);
        Some(id)
    }

    /// The applications of connections that ended since the last call, with how they
    /// ended (call once per turn: an outbound client learns here that it was refused,
    /// reset or timed out).
    pub fn take_ended(&mut self) -> Vec<Ended<A>> {
        std::mem::take(&mut self.ended)
    }

    /// True if a local port is in use towards `remote` by any connection.
    pub fn in_use(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.lookup(&Tuple::new(local, remote)).is_some()
    }

    /// Resets connection `id` (RST to the peer) and forgets it.
    pub fn abort(&mut self, id: ConnId, tx: &mut Tx<'_>) {
        let Some(c) = self.conn(id) else { return };
        let (t, seq) = (c.tuple, c.snd_nxt);
        let rst = Segment { src_port: t.local.port(), dst_port: t.remote.port(), seq, rst: true, ..Default::default() };
        self.counters.rst_sent += 1;
        self.emit(tx, t.local, t.remote, rst);
        self.counters.reset += 1;
        self.remove(id, End::Reset);
    }

    fn new_conn(&self, tuple: Tuple, state: State, iss: u32, irs: u32, now: Instant) -> Conn<A> {
        let c = &self.cfg;
        Conn {
            gen: 0,
            tuple,
            state,
            app: None,
            iss,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            snd_max: iss.wrapping_add(1),
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: irs,
            snd_wl2: iss,
            snd_wscale: 0,
            mss: 536,
            cwnd: 0,
            ssthresh: u32::MAX,
            dupacks: 0,
            recover: None,
            rtt: Rtt::new(
                Duration::from_millis(c.rto_initial_ms),
                Duration::from_millis(c.rto_min_ms),
                Duration::from_millis(c.rto_max_ms),
            ),
            rtt_seq: None,
            backoff: 0,
            fin_seq: None,
            irs,
            rcv_nxt: irs.wrapping_add(1),
            rcv_wscale: 0,
            rcv_adv: irs.wrapping_add(1),
            ooo: Vec::new(),
            ooo_fin: None,
            ts_ok: false,
            ts_recent: 0,
            unacked_segs: 0,
            ack_now: false,
            rtx_at: None,
            delack_at: None,
            end_at: None,
            last_active: self.tick(now),
            wheel_at: None,
            from_cookie: false,
            outbound: state == State::SynSent,
            sack_ok: false,
            cwnd_limited: false,
            board: None,
            cc: Cc::with_hystart(c.congestion, c.hystart),
            min_rtt_us: u32::MAX,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_recoveries: 0,
            ka_probes: 0,
            zero_since: None,
            closed_by_us: false,
            dsack_out: None,
            sack_last: None,
            probe_at: None,
            probe_is_tlp: false,
            ka_at: None,
        }
    }

    fn insert(&mut self, mut conn: Conn<A>) -> ConnId {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.gens.push(0);
            (self.slab.len() - 1) as u32
        });
        conn.gen = self.gens[idx as usize];
        if self.cfg.max_connections_per_source > 0 && !conn.outbound {
            *self.per_source.entry(conn.tuple.remote.addr().ip()).or_insert(0) += 1;
        }
        if self.track_lifecycle {
            self.lifecycle.push((conn.tuple.local.addr(), conn.tuple.remote.addr(), true));
        }
        let h = self.keys.hash_one(conn.tuple);
        self.slab[idx as usize] = Some(conn);
        let (slab, keys) = (&self.slab, &self.keys);
        self.table.insert_unique(h, idx, |&i| keys.hash_one(slab[i as usize].as_ref().expect("in the table").tuple));
        ConnId::new(idx, self.gens[idx as usize])
    }

    fn remove(&mut self, id: ConnId, end: End) {
        let Some(mut c) = self.slab.get_mut(id.idx() as usize).and_then(Option::take) else { return };
        if c.state == State::SynReceived {
            self.half_open -= 1;
        }
        if end == End::Orderly && c.app.is_some() {
            self.counters.closed += 1;
        }
        if let Some(srtt) = c.rtt.srtt() {
            self.rtt_at_close.record(srtt);
        }
        if let Some(app) = c.app.take() {
            self.ended.push(Ended { id, app, end, state: c.state });
        }
        let h = self.keys.hash_one(c.tuple);
        if let Ok(e) = self.table.find_entry(h, |&i| i == id.idx()) {
            e.remove();
        }
        if self.cfg.max_connections_per_source > 0 && !c.outbound {
            let ip = c.tuple.remote.addr().ip();
            if let Some(n) = self.per_source.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&ip);
                }
            }
        }
        if self.track_lifecycle {
            self.lifecycle.push((c.tuple.local.addr(), c.tuple.remote.addr(), false));
        }
        self.gens[id.idx() as usize] = self.gens[id.idx() as usize].wrapping_add(1);
        self.free.push(id.idx());
    }

    // ---- passive open -------------------------------------------------------------

    fn on_listen(&mut self, now: Instant, t: Tuple, seg: &Segment<'_>, cx: &mut C, tx: &mut Tx<'_>) {
        if seg.rst {
            return;
        }
        if !self.listening.contains(&t.local.port()) {
            return self.reset_for(t.local, t.remote, seg, tx);
        }
        if seg.ack.is_some() && !seg.syn {
            return self.on_cookie_ack(now, t, seg, cx, tx);
        }
        if !seg.syn || seg.ack.is_some() {
            return self.reset_for(t.local, t.remote, seg, tx);
        }
        if self.table.len() >= self.cfg.max_connections {
            self.counters.syn_dropped += 1;
            return;
        }
        if self.source_full(&t) {
            self.counters.refused_per_source += 1;
            return self.reset_for(t.local, t.remote, seg, tx);
        }
        if self.half_open >= self.cfg.syn_backlog {
            if self.cfg.syn_cookies {
                return self.send_cookie(now, t, seg, tx);
            }
            self.counters.syn_dropped += 1;
            return;
        }
        let iss = self.iss(&t, now);
        let mut c = self.new_conn(t, State::SynReceived, iss, seg.seq, now);
        self.take_syn_options(&mut c, seg);
        self.half_open += 1;
        let id = self.insert(c);
        self.send_syn(id, now, tx);
        self.arm_rtx(id, now);
        self.reschedule(id);
    }

    /// True when the remote address of `t` holds `max_connections_per_source` already.
    fn source_full(&self, t: &Tuple) -> bool {
        let cap = self.cfg.max_connections_per_source;
        cap > 0 && self.per_source.get(&t.remote.addr().ip()).is_some_and(|&n| n as usize >= cap)
    }

    fn take_syn_options(&self, c: &mut Conn<A>, seg: &Segment<'_>) {
        // RFC 9293 §3.7.1: 536 when the option is absent (IPv6: 1220, RFC 8200 §5).
        let (default, ours) = if c.tuple.local.is_ipv6() { (1220, self.cfg.mss - 20) } else { (536, self.cfg.mss) };
        c.mss = u32::from(seg.mss.unwrap_or(default).min(ours).max(64));
        if let Some(ws) = seg.wscale {
            c.snd_wscale = ws.min(14);
            c.rcv_wscale = self.cfg.window_scale;
        }
        c.snd_wnd = u32::from(seg.window);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = seg.seq;
        if let (true, Some((tsval, _))) = (self.cfg.timestamps, seg.ts) {
            c.ts_ok = true;
            c.ts_recent = tsval;
            // Every segment then carries 12 option bytes: keep the frame within the MTU.
            c.mss -= 12;
        }
        c.sack_ok = self.cfg.sack && seg.sack_permitted;
        c.cwnd = self.cfg.initial_cwnd_segments * c.mss;
    }

    fn send_cookie(&mut self, now: Instant, t: Tuple, seg: &Segment<'_>, tx: &mut Tx<'_>) {
        let peer_mss = seg.mss.unwrap_or(if t.local.is_ipv6() { 1220 } else { 536 });
        let ours = self.cfg.mss - Self::ip_extra(&t);
        let idx = COOKIE_MSS.iter().rposition(|&m| m <= peer_mss.min(ours)).unwrap_or(0) as u32;
        let slot = Self::cookie_slot(now, self.epoch);
        self.last_cookie_slot = slot;
        let iss = self.cookie(&t, seg.seq, slot, idx);
        // With timestamps, the options the SYN offered ride in the low bits of our TSval
        // (as Linux does), which the final ACK echoes back: window scale and SACK survive
        // a cookie. Without timestamps the connection goes without them.
        let ts = match (self.cfg.timestamps, seg.ts) {
            (true, Some((tsval, _))) => {
                let bits = cookie_ts_bits(seg.wscale, self.cfg.sack && seg.sack_permitted);
                let now_ts = self.ts_now(now);
                let mut ours = (now_ts & !COOKIE_TS_MASK) | bits;
                if gt(ours, now_ts) {
                    ours = ours.wrapping_sub(COOKIE_TS_MASK + 1);
                }
                Some((ours, tsval))
            }
            _ => None,
        };
        let out = Segment {
            src_port: t.local.port(),
            dst_port: t.remote.port(),
            seq: iss,
            ack: Some(seg.seq.wrapping_add(1)),
            syn: true,
            window: self.cfg.recv_window_bytes.min(65535) as u16,
            mss: Some(ours),
            wscale: ts.and(seg.wscale).map(|_| self.cfg.window_scale),
            sack_permitted: ts.is_some() && self.cfg.sack && seg.sack_permitted,
            ts,
            ..Default::default()
        };
        self.counters.syn_cookies_sent += 1;
        self.emit(tx, t.local, t.remote, out);
    }

    fn on_cookie_ack(&mut self, now: Instant, t: Tuple, seg: &Segment<'_>, cx: &mut C, tx: &mut Tx<'_>) {
        let ack = seg.ack.unwrap_or(0);
        let cookie = ack.wrapping_sub(1);
        let peer_isn = seg.seq.wrapping_sub(1);
        let slot_now = Self::cookie_slot(now, self.epoch);
        let mss_idx = (cookie >> 24) & 7;
        let valid = self.cfg.syn_cookies
            && self.last_cookie_slot + 1 >= slot_now
            && [slot_now, slot_now - 1].iter().any(|&s| self.cookie(&t, peer_isn, s, mss_idx) == cookie);
        if !valid {
            self.counters.syn_cookies_invalid += 1;
            return self.reset_for(t.local, t.remote, seg, tx);
        }
        if self.source_full(&t) {
            self.counters.refused_per_source += 1;
            return self.reset_for(t.local, t.remote, seg, tx);
        }
        let mut c = self.new_conn(t, State::Established, cookie, peer_isn, now);
        c.from_cookie = true;
        c.mss = u32::from(COOKIE_MSS[mss_idx as usize]);
        c.snd_una = ack;
        c.snd_nxt = ack;
        c.snd_max = ack;
        c.snd_wnd = u32::from(seg.window);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = seg.seq;
        c.snd_wl2 = ack;
        if let (true, Some((tsval, tsecr))) = (self.cfg.timestamps, seg.ts) {
            // The options the SYN offered, from the echo of our cookie TSval.
            let (wscale, sack) = cookie_ts_options(tsecr);
            if let Some(ws) = wscale {
                c.snd_wscale = ws;
                c.rcv_wscale = self.cfg.window_scale;
                c.snd_wnd = u32::from(seg.window) << ws;
                c.max_snd_wnd = c.snd_wnd;
            }
            c.sack_ok = sack && self.cfg.sack;
            c.ts_ok = true;
            c.ts_recent = tsval;
            c.mss -= 12;
        }
        c.cwnd = self.cfg.initial_cwnd_segments * c.mss;
        c.rcv_adv = c.rcv_nxt.wrapping_add(self.cfg.recv_window_bytes.min(65535));
        let id = self.insert(c);
        self.counters.syn_cookies_accepted += 1;
        self.established(id, cx);
        self.on_conn(id, now, seg, cx, tx);
        self.finish(id, now, cx, tx);
    }

    fn established(&mut self, id: ConnId, cx: &mut C) {
        self.counters.established += 1;
        if let Some(app) = self.conn_mut(id).and_then(|c| c.app.as_mut()) {
            // An active open brought its application along.
            app.connected(id, cx);
            return;
        }
        let app = A::open(id, cx);
        if let Some(c) = self.conn_mut(id) {
            c.app = Some(app);
        }
    }

    fn send_syn(&mut self, id: ConnId, now: Instant, tx: &mut Tx<'_>) {
        let ts_now = self.ts_now(now);
        let (mss, ts_on, wscale_on, win, sack_on) =
            (self.cfg.mss, self.cfg.timestamps, self.cfg.window_scale, self.cfg.recv_window_bytes, self.cfg.sack);
        let Some(c) = self.conn_mut(id) else { return };
        let mss = mss - Self::ip_extra(&c.tuple);
        let active = c.state == State::SynSent;
        let seg = Segment {
            src_port: c.tuple.local.port(),
            dst_port: c.tuple.remote.port(),
            seq: c.iss,
            ack: (!active).then_some(c.rcv_nxt),
            syn: true,
            window: win.min(65535) as u16,
            mss: Some(mss),
            wscale: if active || c.rcv_wscale > 0 { Some(wscale_on) } else { None },
            sack_permitted: if active { sack_on } else { c.sack_ok },
            ts: if active && ts_on {
                Some((ts_now, 0))
            } else if c.ts_ok {
                Some((ts_now, c.ts_recent))
            } else {
                None
            },
            ..Default::default()
        };
        c.rcv_adv = c.rcv_nxt.wrapping_add(u32::from(seg.window));
        let (src, dst) = (c.tuple.local, c.tuple.remote);
        self.emit(tx, src, dst, seg);
    }

    // ---- established path -----------------------------------------------------------

    fn on_conn(&mut self, id: ConnId, now: Instant, seg: &Segment<'_>, cx: &mut C, tx: &mut Tx<'_>) {
        let state = match self.conn(id) {
            Some(c) => c.state,
            None => return,
        };
        match state {
            State::SynSent => self.on_syn_sent(id, now, seg, cx, tx),
            _ => self.on_synchronized(id, now, seg, cx, tx),
        }
    }

    fn on_syn_sent(&mut self, id: ConnId, now: Instant, seg: &Segment<'_>, cx: &mut C, tx: &mut Tx<'_>) {
        let Some(c) = self.conn(id) else { return };
        let (iss, t) = (c.iss, c.tuple);
        if let Some(ack) = seg.ack {
            if ack != iss.wrapping_add(1) {
                return self.reset_for(t.local, t.remote, seg, tx);
            }
        }
        if seg.rst {
            if seg.ack.is_some() {
                self.counters.reset += 1;
                self.remove(id, End::Reset);
            }
            return;
        }
        if !seg.syn || seg.ack.is_none() {
            return;
        }
        let mut c = self.slab[id.idx() as usize].take().expect("exists");
        c.irs = seg.seq;
        c.rcv_nxt = seg.seq.wrapping_add(1);
        c.rcv_adv = c.rcv_nxt;
        self.take_syn_options(&mut c, seg);
        if seg.wscale.is_none() {
            c.rcv_wscale = 0;
            c.snd_wscale = 0;
        }
        c.snd_wl2 = iss.wrapping_add(1);
        c.snd_una = iss.wrapping_add(1);
        c.state = State::Established;
        c.rtx_at = None;
        c.backoff = 0;
        c.ack_now = true;
        self.slab[id.idx() as usize] = Some(c);
        self.established(id, cx);
        self.output(id, now, tx);
    }

    /// The window field to send and the right edge it advertises (never shrinking the
    /// edge already advertised, RFC 9293 §3.8.6.2.2).
    fn window_calc(cfg: &TcpConfig, c: &Conn<A>) -> (u16, u32) {
        let held = c.app.as_ref().map_or(0, |a| a.buffered()) + c.ooo.iter().map(|(_, d)| d.len()).sum::<usize>();
        let wnd =
            cfg.recv_window_bytes.saturating_sub(held as u32).max(dist(c.rcv_nxt, c.rcv_adv).min(i32::MAX as u32));
        let field = (wnd >> c.rcv_wscale).min(65535);
        (field as u16, c.rcv_nxt.wrapping_add(field << c.rcv_wscale))
    }

    fn on_synchronized(&mut self, id: ConnId, now: Instant, seg: &Segment<'_>, cx: &mut C, tx: &mut Tx<'_>) {
        let tick = self.tick(now);
        let Some(c) = self.conn_mut(id) else { return };
        // RFC 7323 §5: PAWS, except for a reordered duplicate ACK (Linux's
        // tcp_disordered_ack): a pure ACK at RCV.NXT acknowledging SND.UNA, with the
        // window unchanged and a TSval within an RTO of TS.Recent, is an old ACK overtaken
        // by a newer one, not a wrapped segment, and its SACK blocks still count.
        let disordered_ack = seg.payload.is_empty()
            && !seg.syn
            && !seg.fin
            && seg.seq == c.rcv_nxt
            && seg.ack == Some(c.snd_una)
            && u32::from(seg.window) << c.snd_wscale == c.snd_wnd
            && seg.ts.is_some_and(|(v, _)| dist(v, c.ts_recent) as u64 <= c.rtt.rto().as_millis() as u64);
        if c.ts_ok && !seg.rst && !disordered_ack {
            if let Some((tsval, _)) = seg.ts {
                if lt(tsval, c.ts_recent) {
                    c.ack_now = true;
                    self.counters.paws_rejected += 1;
                    return self.output(id, now, tx);
                }
            }
        }
        // RFC 9293 §3.10.7.4: is the segment in the window?
        let len = seg.seq_len();
        let wnd = dist(c.rcv_nxt, c.rcv_adv);
        let start_ok = ge(seg.seq, c.rcv_nxt) && lt(seg.seq, c.rcv_nxt.wrapping_add(wnd));
        let end = seg.seq.wrapping_add(len).wrapping_sub(1);
        let acceptable = match (len, wnd) {
            (0, 0) => seg.seq == c.rcv_nxt,
            (0, _) => start_ok,
            (_, 0) => false,
            _ => start_ok || (ge(end, c.rcv_nxt) && lt(end, c.rcv_nxt.wrapping_add(wnd))),
        };
        if !acceptable {
            if !seg.rst {
                c.ack_now = true;
                // Data we already have, sent again: report it as a duplicate (RFC 2883).
                let plen = seg.payload.len() as u32;
                let start = seg.seq.wrapping_add(u32::from(seg.syn));
                if c.sack_ok
                    && plen > 0
                    && le(start.wrapping_add(plen), c.rcv_nxt)
                    && dist(start, c.rcv_nxt) <= wnd.max(1 << 20)
                {
                    c.dsack_out = Some((start, start.wrapping_add(plen)));
                }
                self.counters.unacceptable += 1;
                self.output(id, now, tx);
            }
            return;
        }
        // RFC 5961 §3: only an exact RST resets; one in the window earns a challenge ACK.
        if seg.rst {
            if seg.seq == c.rcv_nxt {
                self.counters.reset += 1;
                self.remove(id, End::Reset);
            } else {
                c.ack_now = true;
                self.counters.challenge_acks += 1;
                self.output(id, now, tx);
            }
            return;
        }
        // RFC 5961 §4: SYN in a synchronized state → challenge ACK.
        if seg.syn && c.state != State::SynReceived {
            c.ack_now = true;
            self.counters.challenge_acks += 1;
            return self.output(id, now, tx);
        }
        let Some(ack) = seg.ack else { return };
        if c.state == State::SynReceived {
            if ack != c.iss.wrapping_add(1) {
                let t = c.tuple;
                return self.reset_for(t.local, t.remote, seg, tx);
            }
            c.state = State::Established;
            c.snd_una = ack;
            c.snd_wnd = u32::from(seg.window) << c.snd_wscale;
            c.max_snd_wnd = c.snd_wnd;
            c.snd_wl1 = seg.seq;
            c.snd_wl2 = ack;
            c.rtx_at = None;
            c.backoff = 0;
            if let Some((_, tsecr)) = seg.ts.filter(|_| c.ts_ok) {
                let sample = self.tick(now).saturating_sub(u64::from(tsecr.wrapping_sub(1)));
                if let Some(c) = self.conn_mut(id) {
                    c.rtt.sample(Duration::from_millis(sample));
                }
            }
            self.half_open -= 1;
            self.established(id, cx);
        }
        if !self.on_ack(id, now, seg, ack, cx, tx) {
            return;
        }
        let Some(c) = self.conn_mut(id) else { return };
        c.last_active = tick;
        c.ka_probes = 0;
        c.ka_at = None;
        // RFC 7323 §4.3: remember the timestamp of the in-window segment.
        if let Some((tsval, _)) = seg.ts {
            if c.ts_ok && le(seg.seq, c.rcv_nxt) {
                c.ts_recent = tsval;
            }
        }
        let new_data = gt(seg.seq.wrapping_add(seg.payload.len() as u32), c.rcv_nxt);
        if c.closed_by_us && !seg.payload.is_empty() && new_data {
            // We closed this connection on our own (idle): no app will answer what comes
            // now, and our FIN already took the sequence space a reply would need. As
            // Linux does for new data to a closed socket (a duplicate of old data is
            // only acknowledged): reset.
            return self.abort(id, tx);
        }
        self.on_data(id, now, seg, cx);
        self.output(id, now, tx);
    }

    /// ACK processing; false when the segment must be dropped.
    fn on_ack(&mut self, id: ConnId, now: Instant, seg: &Segment<'_>, ack: u32, cx: &mut C, tx: &mut Tx<'_>) -> bool {
        let tick = self.tick(now);
        let Some(c) = self.conn_mut(id) else { return false };
        if gt(ack, c.snd_max) {
            c.ack_now = true;
            self.output(id, now, tx);
            return false;
        }
        // RFC 5961 §5: ACKs too far behind are dropped.
        if lt(ack, c.snd_una.wrapping_sub(c.max_snd_wnd.max(1))) {
            c.ack_now = true;
            self.counters.challenge_acks += 1;
            self.output(id, now, tx);
            return false;
        }
        let wnd = u32::from(seg.window) << c.snd_wscale;
        let acks_new = gt(ack, c.snd_una);
        if c.sack_ok && c.board.is_some() {
            self.sack_ack(id, now, tick, seg, ack, cx, tx);
        } else if gt(ack, c.snd_una) {
            self.new_ack(id, now, tick, seg, ack, cx, tx);
        } else if ack == c.snd_una && seg.payload.is_empty() && !seg.fin && wnd == c.snd_wnd && c.flight() > 0 {
            self.dup_ack(id, now, tx);
        }
        let Some(c) = self.conn_mut(id) else { return false };
        // Window update (RFC 9293 §3.10.7.4, SND.WL1/WL2 rule), and as Linux also on
        // any ACK of new data: else a segment from further on (out of order) that
        // closed the window would keep it shut until the peer's sequence caught up,
        // which it never does if the peer has nothing more to send (the fuzz harness
        // found the server probing a reopened window one byte per RTO for ever).
        if acks_new || lt(c.snd_wl1, seg.seq) || (c.snd_wl1 == seg.seq && le(c.snd_wl2, ack)) {
            c.snd_wnd = wnd;
            c.max_snd_wnd = c.max_snd_wnd.max(wnd);
            if wnd > 0 {
                c.zero_since = None;
            }
            c.snd_wl1 = seg.seq;
            c.snd_wl2 = ack;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn new_ack(
        &mut self,
        id: ConnId,
        now: Instant,
        tick: Tick,
        seg: &Segment<'_>,
        ack: u32,
        cx: &mut C,
        tx: &mut Tx<'_>,
    ) {
        let now_us = self.us(now);
        let Some(c) = self.conn_mut(id) else { return };
        let acked = dist(c.snd_una, ack);
        // RTT: the timestamp echo (RFC 7323), else the one timed segment (Karn).
        let mut sample_ms = None;
        if let Some((_, tsecr)) = seg.ts.filter(|_| c.ts_ok && seg.ts.is_some_and(|t| t.1 != 0)) {
            sample_ms = Some(tick.saturating_sub(u64::from(tsecr.wrapping_sub(1))));
        } else if let Some((s, at)) = c.rtt_seq {
            if ge(ack, s) {
                sample_ms = Some(tick - at);
                c.rtt_seq = None;
            }
        }
        if let Some(ms) = sample_ms {
            c.rtt.sample(Duration::from_millis(ms));
        }
        let fin_acked = Self::advance_una(c, id, ack, cx);
        let mut hy = HyEvent::None;
        // Congestion control: NewReno (RFC 5681, RFC 6582).
        match c.recover {
            Some(rec) if lt(ack, rec) => {
                // Partial ACK: retransmit the next hole, deflate.
                c.cwnd = c.cwnd.saturating_sub(acked).saturating_add(c.mss);
                c.dupacks = 0;
                self.retransmit_head(id, now, tx);
            }
            Some(_) => {
                c.cwnd = c.ssthresh;
                c.recover = None;
                c.dupacks = 0;
            }
            None => {
                c.dupacks = 0;
                hy = c.cc.hystart_ack(ack, c.snd_nxt, sample_ms.map(|ms| ms * 1000), c.cwnd, &mut c.ssthresh);
                if c.cwnd_limited {
                    let srtt = c.rtt.srtt().map_or(0, |d| d.as_micros() as u64);
                    c.cwnd = c.cc.on_ack(c.cwnd, c.ssthresh, acked, c.mss, now_us, srtt);
                }
            }
        }
        self.counters.count_hystart(hy);
        let Some(c) = self.conn_mut(id) else { return };
        c.rtx_at = if c.flight() > 0 { Some(tick + c.rtt.rto().as_millis() as Tick) } else { None };
        if fin_acked {
            self.our_fin_acked(id, now);
        }
    }

    /// The cumulative part of a new ACK: SND.UNA (and SND.NXT) move to `ack`, the
    /// backoff ends, and the application releases the acknowledged bytes (the queue must
    /// start at the new SND.UNA before anything is sent from it again). True if it
    /// acknowledged our FIN.
    fn advance_una(c: &mut Conn<A>, id: ConnId, ack: u32, cx: &mut C) -> bool {
        let acked = dist(c.snd_una, ack);
        let fin_acked = c.fin_seq.is_some_and(|f| gt(ack, f));
        let data_acked = acked - u32::from(fin_acked && c.fin_seq.is_some_and(|f| ge(f, c.snd_una)));
        c.snd_una = ack;
        if lt(c.snd_nxt, ack) {
            c.snd_nxt = ack;
        }
        c.backoff = 0;
        if data_acked > 0 {
            if let Some(app) = c.app.as_mut() {
                app.acked(data_acked as usize, id, cx);
            }
        }
        fin_acked
    }

    /// ACK processing on a SACK connection with data in flight: the cumulative part, the
    /// SACK blocks on the scoreboard, RACK loss detection (RFC 8985 §6), the end of a
    /// tail loss probe (§7.4), undo of spurious episodes (D-SACK, timestamps), and the
    /// congestion window.
    #[allow(clippy::too_many_arguments)]
    fn sack_ack(
        &mut self,
        id: ConnId,
        now: Instant,
        tick: Tick,
        seg: &Segment<'_>,
        ack: u32,
        cx: &mut C,
        tx: &mut Tx<'_>,
    ) {
        let now_us = self.us(now);
        let Some(c) = self.conn_mut(id) else { return };
        let mut info = AckInfo::default();
        let board = c.board.as_deref_mut().expect("sack_ack has a board");
        let min_rtt = u64::from(c.min_rtt_us);
        let advanced = gt(ack, c.snd_una);
        let mut acked = 0;
        let mut fin_acked = false;
        if advanced {
            board.ack(ack, now_us, min_rtt, &mut info);
            acked = dist(c.snd_una, ack);
            fin_acked = c.fin_seq.is_some_and(|f| gt(ack, f));
        }
        let blocks: [(u32, u32); 3] = std::array::from_fn(|i| seg.sack[i].unwrap_or((0, 0)));
        let n = seg.sack.iter().flatten().count();
        board.sack(&blocks[..n], ack, now_us, min_rtt, &mut info);
        // Spurious RTO (RFC 3522's timestamp test, as Linux's undo): the first ACK after
        // the timeout echoes a TSval older than our first retransmission.
        let mut undo = false;
        if let Some(u) = board.undo.as_mut() {
            if let Some(d) = info.dsack.filter(|d| ge(d.0, u.marker) && le(d.1, u.end) && u.retrans > 0) {
                // A D-SACK for one of this episode's retransmissions: one fewer that
                // might have been needed; none left means none was.
                let segs = dist(d.0, d.1).div_ceil(c.mss).max(1);
                u.retrans = u.retrans.saturating_sub(segs);
                undo = u.retrans == 0;
            }
            if advanced && u.rto && u.ts != 0 && seg.ts.is_some_and(|(_, e)| e != 0 && lt(e, u.ts)) {
                undo = true;
            }
        }
        // RFC 8985 §7.4: the tail loss probe's episode ends with the ACK of its last
        // byte. A probe that was a retransmission and is not reported as a duplicate
        // repaired a real loss: the congestion window pays for it.
        let mut tlp_loss = false;
        if let Some(t) = board.tlp {
            if info.dsack.is_some() && t.retrans {
                board.tlp = None;
            } else if ge(ack, t.end) {
                board.tlp = None;
                tlp_loss = t.retrans;
            }
        }
        if info.dsack.is_some() {
            // RFC 8985 §6.2 step 4: widen the reordering window.
            c.reo_wnd_mult = c.reo_wnd_mult.saturating_add(1).min(8);
            c.reo_recoveries = 0;
        }
        if info.reordered {
            c.reordering_seen = true;
        }
        // RTT from the scoreboard (µs, never from a retransmission), else the timestamp
        // echo.
        let mut sample_us = info.rtt_us;
        if let Some(r) = info.rtt_us {
            c.rtt.sample(Duration::from_micros(r));
            c.min_rtt_us = c.min_rtt_us.min(r.min(u64::from(u32::MAX - 1)) as u32);
        } else if let Some((_, tsecr)) = seg.ts.filter(|t| advanced && c.ts_ok && t.1 != 0) {
            let ms = tick.saturating_sub(u64::from(tsecr.wrapping_sub(1)));
            c.rtt.sample(Duration::from_millis(ms));
            sample_us = Some(ms * 1000);
        }
        if advanced {
            Self::advance_una(c, id, ack, cx);
        }
        if undo {
            Self::undo(c);
        }
        if tlp_loss {
            c.ssthresh = c.cc.on_congestion(c.cwnd, c.flight(), c.mss);
            c.cwnd = c.ssthresh;
        }
        // Congestion window: no growth in recovery; leave it once the recovery point is
        // acknowledged.
        let mut hy = HyEvent::None;
        match c.recover {
            Some(rec) if lt(ack, rec) => {}
            Some(_) => {
                c.recover = None;
                c.cwnd = c.cwnd.min(c.ssthresh.max(c.mss));
            }
            None if advanced && !undo => {
                hy = c.cc.hystart_ack(ack, c.snd_nxt, sample_us, c.cwnd, &mut c.ssthresh);
                if c.cwnd_limited {
                    let srtt = c.rtt.srtt().map_or(0, |d| d.as_micros() as u64);
                    c.cwnd = c.cc.on_ack(c.cwnd, c.ssthresh, acked, c.mss, now_us, srtt);
                }
            }
            None => {}
        }
        self.counters.count_hystart(hy);
        self.counters.dsacks_received += u64::from(info.dsack.is_some());
        self.counters.undos += u64::from(undo);
        self.rack_detect(id, now);
        let Some(c) = self.conn_mut(id) else { return };
        let mut done_board = None;
        if c.flight() == 0 {
            done_board = c.board.take();
            c.probe_at = None;
        }
        if advanced {
            c.rtx_at = if c.flight() > 0 { Some(tick + c.rtt.rto().as_millis() as Tick) } else { None };
        }
        Self::arm_tlp(c, tick);
        if let Some(b) = done_board.and_then(Board::recycled) {
            if self.spare_boards.len() < SPARE_BOARDS {
                self.spare_boards.push(b);
            }
        }
        if fin_acked {
            self.our_fin_acked(id, now);
        }
        let _ = tx;
    }

    /// RFC 8985 §6.2 steps 4–5 on the scoreboard: mark what is lost, enter recovery on
    /// a new loss, arm the reordering timer for what may still arrive.
    fn rack_detect(&mut self, id: ConnId, now: Instant) {
        let (now_us, tick, ts_now) = (self.us(now), self.tick(now), self.ts_now(now));
        let Some(c) = self.conn_mut(id) else { return };
        let srtt = c.rtt.srtt().map_or(u64::MAX, |d| d.as_micros() as u64);
        let in_recovery = c.recover.is_some();
        let Some(b) = c.board.as_deref_mut() else { return };
        let reo_wnd = if (!c.reordering_seen && (in_recovery || b.sacked_segs >= 3)) || c.min_rtt_us == u32::MAX {
            0
        } else {
            (u64::from(c.reo_wnd_mult) * u64::from(c.min_rtt_us) / 4).min(srtt)
        };
        let (marked, timeout) = b.detect_loss(now_us, reo_wnd);
        if marked && c.recover.is_none() {
            // A new loss: fast recovery (RFC 6675 §5 with RACK's detection).
            // A new episode: what to restore if it proves spurious.
            b.undo = Some(Undo {
                cwnd: c.cwnd,
                ssthresh: c.ssthresh,
                cc: c.cc,
                retrans: 0,
                ts: if c.ts_ok { ts_now } else { 0 },
                rto: false,
                marker: c.snd_una,
                end: c.snd_max,
            });
            b.tlp = None;
            c.ssthresh = c.cc.on_congestion(c.cwnd, c.flight(), c.mss);
            c.cwnd = c.ssthresh;
            c.recover = Some(c.snd_max);
            c.reo_recoveries += 1;
            if c.reo_recoveries >= 16 {
                c.reo_wnd_mult = 1;
                c.reo_recoveries = 0;
            }
            self.counters.fast_retransmits += 1;
        }
        let Some(c) = self.conn_mut(id) else { return };
        match timeout {
            Some(us) => {
                c.probe_at = Some(tick + us.div_ceil(1000).max(1));
                c.probe_is_tlp = false;
            }
            None if !c.probe_is_tlp => c.probe_at = None,
            None => {}
        }
    }

    /// Arms the tail loss probe (RFC 8985 §7.2) when data is in flight, nothing is known
    /// lost, no recovery or probe is under way.
    fn arm_tlp(c: &mut Conn<A>, tick: Tick) {
        let Some(b) = c.board.as_deref() else { return };
        let eligible = c.recover.is_none()
            && c.backoff == 0
            && b.lost == 0
            && b.tlp.is_none()
            && !b.is_empty()
            && matches!(c.state, State::Established | State::CloseWait | State::FinWait1 | State::LastAck);
        if !eligible {
            if c.probe_is_tlp {
                c.probe_at = None;
            }
            return;
        }
        if c.probe_at.is_some() && !c.probe_is_tlp {
            return; // the reordering timer runs first
        }
        let pto = match c.rtt.srtt() {
            Some(srtt) => {
                let mut ms = (2 * srtt.as_micros() as u64).div_ceil(1000).max(TLP_MIN_MS);
                if b.len() == 1 {
                    ms += TLP_DELACK_MS;
                }
                ms
            }
            None => 1000,
        };
        let at = tick + pto;
        c.probe_at = Some(c.rtx_at.map_or(at, |r| r.min(at)));
        c.probe_is_tlp = true;
    }

    /// Restores the window from before a spurious episode.
    fn undo(c: &mut Conn<A>) {
        let Some(b) = c.board.as_deref_mut() else { return };
        let Some(u) = b.undo.take() else { return };
        c.cwnd = c.cwnd.max(u.cwnd);
        c.ssthresh = c.ssthresh.max(u.ssthresh);
        c.cc = u.cc;
        c.recover = None;
        b.unmark_lost();
    }

    fn our_fin_acked(&mut self, id: ConnId, now: Instant) {
        let tw = self.tick(now) + self.cfg.time_wait_ms;
        let Some(c) = self.conn_mut(id) else { return };
        match c.state {
            State::FinWait1 => {
                // The FIN-WAIT-2 timer replaces whatever was armed (finish() arms it).
                c.state = State::FinWait2;
                c.end_at = None;
            }
            State::Closing => {
                c.state = State::TimeWait;
                c.end_at = Some(tw);
            }
            State::LastAck => c.end_at = Some(0), // closed: removed by finish()
            _ => {}
        }
    }

    fn dup_ack(&mut self, id: ConnId, now: Instant, tx: &mut Tx<'_>) {
        let Some(c) = self.conn_mut(id) else { return };
        c.dupacks += 1;
        if c.recover.is_some() {
            c.cwnd = c.cwnd.saturating_add(c.mss);
            return;
        }
        if c.dupacks == 3 {
            c.ssthresh = c.cc.on_congestion(c.cwnd, c.flight(), c.mss);
            c.cwnd = c.ssthresh + 3 * c.mss;
            c.recover = Some(c.snd_max);
            c.rtt_seq = None;
            self.counters.fast_retransmits += 1;
            self.retransmit_head(id, now, tx);
        }
    }

    /// Sends one segment from SND.UNA again (fast retransmit, partial ACK).
    fn retransmit_head(&mut self, id: ConnId, now: Instant, tx: &mut Tx<'_>) {
        let ts_now = self.ts_now(now);
        let Some(Some(c)) = self.slab.get_mut(id.idx() as usize) else { return };
        let Some(app) = c.app.as_ref() else { return };
        let q = app.send_queue();
        let len = q.len().min(c.mss as usize);
        let fin = len == q.len() && c.fin_seq == Some(c.snd_una.wrapping_add(len as u32));
        if len == 0 && !fin {
            return;
        }
        let (win, adv) = Self::window_calc(&self.cfg, c);
        let seg = Segment { fin, psh: true, ..c.segment(c.snd_una, win, ts_now, len) };
        send_data(&mut self.counters, tx, c.tuple, seg, Payload::of(q, 0, len));
        advertise(c, adv);
    }

    fn on_data(&mut self, id: ConnId, now: Instant, seg: &Segment<'_>, cx: &mut C) {
        let delack = self.cfg.delayed_ack_ms;
        let tick = self.tick(now);
        let tw = tick + self.cfg.time_wait_ms;
        let Some(c) = self.conn_mut(id) else { return };
        if !matches!(c.state, State::Established | State::FinWait1 | State::FinWait2) {
            if seg.fin && c.state == State::TimeWait {
                c.ack_now = true; // their FIN again: our ACK was lost
                c.end_at = Some(tw);
            }
            return;
        }
        let mut stored_ooo = false;
        let data_seq = seg.seq.wrapping_add(u32::from(seg.syn));
        let mut payload = seg.payload;
        let fin_seq = seg.fin.then(|| data_seq.wrapping_add(payload.len() as u32));
        if lt(data_seq, c.rcv_nxt) {
            let skip = dist(data_seq, c.rcv_nxt) as usize;
            if c.sack_ok && skip > 0 && !payload.is_empty() {
                let dup_end = data_seq.wrapping_add(skip.min(payload.len()) as u32);
                c.dsack_out = Some((data_seq, dup_end));
                c.ack_now = true;
            }
            payload = &payload[skip.min(payload.len())..];
        }
        let start = if lt(data_seq, c.rcv_nxt) { c.rcv_nxt } else { data_seq };
        let room = dist(c.rcv_nxt, c.rcv_adv).saturating_sub(dist(c.rcv_nxt, start)) as usize;
        payload = &payload[..payload.len().min(room)];
        if !payload.is_empty() {
            if start == c.rcv_nxt {
                c.rcv_nxt = c.rcv_nxt.wrapping_add(payload.len() as u32);
                let app = c.app.as_mut().expect("established has an app");
                app.received(payload, id, cx);
                // RFC 5681 §4.2: a segment that fills (part of) a hole is ACKed at once.
                let filled_hole = !c.ooo.is_empty();
                Self::drain_ooo(c, id, cx);
                c.unacked_segs += 1;
                if c.unacked_segs >= 2 || delack == 0 || filled_hole || !c.ooo.is_empty() {
                    c.ack_now = true;
                } else if c.delack_at.is_none() {
                    c.delack_at = Some(tick + delack);
                }
            } else {
                let end = start.wrapping_add(payload.len() as u32);
                let have = c.ooo.iter().any(|(s, d)| le(*s, start) && ge(s.wrapping_add(d.len() as u32), end));
                if have {
                    // A duplicate of what waits out of order (RFC 2883 §4.1.3).
                    if c.sack_ok {
                        c.dsack_out = Some((start, end));
                    }
                } else if c.ooo.len() < OOO_MAX_SEGMENTS {
                    c.sack_last = Some(start);
                    c.ooo.push((start, payload.to_vec()));
                    c.ooo.sort_by(
                        |a, b| if lt(a.0, b.0) { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater },
                    );
                }
                c.ack_now = true; // a duplicate ACK tells the sender about the hole
                stored_ooo = true;
            }
        }
        if let Some(f) = fin_seq {
            c.ooo_fin = Some(f);
        }
        if stored_ooo {
            self.counters.out_of_order += 1;
        }
        let c = self.conn_mut(id).expect("exists");
        if c.ooo_fin == Some(c.rcv_nxt) {
            c.ooo_fin = None;
            c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
            c.ack_now = true;
            c.state = match c.state {
                State::Established => State::CloseWait,
                State::FinWait1 if c.fin_seq.is_some_and(|f| gt(c.snd_una, f)) => State::TimeWait,
                State::FinWait1 => State::Closing,
                State::FinWait2 => State::TimeWait,
                s => s,
            };
            if c.state == State::TimeWait {
                c.end_at = Some(tw);
            }
            if let Some(app) = c.app.as_mut() {
                app.peer_closed(id, cx);
            }
        }
    }

    fn drain_ooo(c: &mut Conn<A>, id: ConnId, cx: &mut C) {
        while let Some(pos) =
            c.ooo.iter().position(|(s, d)| le(*s, c.rcv_nxt) && gt(s.wrapping_add(d.len() as u32), c.rcv_nxt))
        {
            let (s, d) = c.ooo.remove(pos);
            let skip = dist(s, c.rcv_nxt) as usize;
            c.rcv_nxt = c.rcv_nxt.wrapping_add((d.len() - skip) as u32);
            if let Some(app) = c.app.as_mut() {
                app.received(&d[skip..], id, cx);
            }
        }
        let nxt = c.rcv_nxt;
        c.ooo.retain(|(s, d)| gt(s.wrapping_add(d.len() as u32), nxt));
    }

    /// Sends what the window allows — on a SACK connection the segments the scoreboard
    /// marked lost first — then FIN when the application is finishing, then a pure ACK
    /// if one is owed.
    fn output(&mut self, id: ConnId, now: Instant, tx: &mut Tx<'_>) {
        let tick = self.tick(now);
        let ts_now = self.ts_now(now);
        let now_us = self.us(now);
        let Some(Some(c)) = self.slab.get_mut(id.idx() as usize) else { return };
        if c.gen != id.gen() {
            return;
        }
        let mut sent_new = false;
        c.cwnd_limited = false;
        while c.synchronized() && c.state != State::TimeWait {
            let Some(app) = c.app.as_ref() else { break };
            let q = app.send_queue();
            let pipe = c.pipe();
            // RFC 6675 §5 (NextSeg rule 1, with RACK's marks): lost segments first.
            if let Some(i) = c.board.as_deref().and_then(|b| b.next_lost()) {
                if pipe >= c.cwnd {
                    c.cwnd_limited = true;
                    break;
                }
                let r = c.board.as_deref().expect("board").get(i);
                let fin = r.flags & sack::FIN != 0;
                let off = dist(c.snd_una, r.start) as usize;
                let len = (dist(r.start, r.end) - u32::from(fin)) as usize;
                if off + len > q.len() {
                    // Cannot happen while records mirror the queue; never send garbage.
                    c.board.as_deref_mut().expect("board").retransmitted(i, now_us);
                    continue;
                }
                let (win, adv) = Self::window_calc(&self.cfg, c);
                let seg = Segment { fin, psh: true, ..c.segment(r.start, win, ts_now, len) };
                send_data(&mut self.counters, tx, c.tuple, seg, Payload::of(q, off, len));
                advertise(c, adv);
                c.board.as_deref_mut().expect("board").retransmitted(i, now_us);
                self.counters.sack_retransmits += 1;
                c.dsack_out = None;
                c.ack_now = false;
                c.unacked_segs = 0;
                c.delack_at = None;
                if c.rtx_at.is_none() {
                    c.rtx_at = Some(tick + c.rtt.backed_off(c.backoff).as_millis() as Tick);
                }
                continue;
            }
            let off = dist(c.snd_una, c.snd_nxt) as usize;
            let fin_sent_past = c.fin_seq.is_some_and(|f| gt(c.snd_nxt, f));
            let avail = q.len().saturating_sub(off);
            let cwnd_room = c.cwnd.saturating_sub(pipe) as usize;
            let wnd_room = c.snd_wnd.saturating_sub(c.flight()) as usize;
            let seg_max = c.mss.saturating_sub(c.sack_extra()).max(64) as usize;
            let mut len = avail.min(cwnd_room).min(wnd_room).min(seg_max);
            if avail > len && cwnd_room < avail.min(wnd_room).min(seg_max) {
                c.cwnd_limited = true;
            }
            if len < seg_max && len < avail && c.flight() > 0 {
                // Sender-side silly window avoidance (RFC 9293 §3.8.6.2.1): with more
                // queued and an ACK to come, wait for room for a full segment.
                len = 0;
            }
            // Our FIN is due when the app has finished, or once it was sent (an idle
            // close sends it without the app): then it is sent again after a timeout.
            let may_fin = (app.finishing() || c.fin_seq.is_some())
                && off + len == q.len()
                && !fin_sent_past
                && matches!(
                    c.state,
                    State::Established | State::CloseWait | State::FinWait1 | State::LastAck | State::Closing
                );
            if len == 0 && !may_fin {
                if avail > 0 && c.snd_wnd == 0 && c.flight() == 0 && c.rtx_at.is_none() {
                    // Zero window: the retransmission timer doubles as the persist timer.
                    c.rtx_at = Some(tick + c.rtt.backed_off(c.backoff).as_millis() as Tick);
                }
                break;
            }
            if c.flight() == 0 && len > 0 {
                // Restarting after idle: a new CUBIC epoch, not a jump along the old one.
                c.cc.restart();
            }
            let (win, adv) = Self::window_calc(&self.cfg, c);
            let seg = Segment {
                fin: may_fin,
                psh: len > 0 && off + len == q.len(),
                ..c.segment(c.snd_nxt, win, ts_now, len)
            };
            send_data(&mut self.counters, tx, c.tuple, seg, Payload::of(q, off, len));
            advertise(c, adv);
            let used = len as u32 + u32::from(may_fin);
            if c.rtt_seq.is_none() && !c.ts_ok && len > 0 && ge(c.snd_nxt, c.snd_max) {
                c.rtt_seq = Some((c.snd_nxt.wrapping_add(used), tick));
            }
            if may_fin && c.fin_seq.is_none() {
                c.fin_seq = Some(c.snd_nxt.wrapping_add(len as u32));
                c.state = match c.state {
                    State::CloseWait => State::LastAck,
                    State::Established => State::FinWait1,
                    s => s,
                };
            }
            if ge(c.snd_nxt, c.snd_max) {
                let start = c.snd_nxt;
                c.record_sent(start, used, now_us, may_fin, &mut self.spare_boards);
                sent_new = true;
            }
            c.snd_nxt = c.snd_nxt.wrapping_add(used);
            if gt(c.snd_nxt, c.snd_max) {
                c.snd_max = c.snd_nxt;
            }
            if c.rtx_at.is_none() {
                c.rtx_at = Some(tick + c.rtt.backed_off(c.backoff).as_millis() as Tick);
            }
            c.dsack_out = None;
            c.ack_now = false;
            c.unacked_segs = 0;
            c.delack_at = None;
            if may_fin {
                break;
            }
        }
        if c.ack_now && (c.synchronized() || c.state == State::SynReceived) {
            let (win, adv) = Self::window_calc(&self.cfg, c);
            // A pure ACK carries SND.MAX, not SND.NXT: while retransmitting, SND.NXT is
            // behind what the peer already holds and the ACK would be out of its window
            // (the BSD rule in tcp_output).
            let seg = c.segment(c.snd_max, win, ts_now, 0);
            send_on(&mut self.counters, tx, c.tuple, seg);
            advertise(c, adv);
            c.dsack_out = None;
            c.ack_now = false;
            c.unacked_segs = 0;
            c.delack_at = None;
        }
        if sent_new {
            Self::arm_tlp(c, tick);
        }
    }

    /// After handling a connection: remove it if it ended, else reschedule its timer.
    fn finish(&mut self, id: ConnId, now: Instant, _cx: &mut C, _tx: &mut Tx<'_>) {
        let tick = self.tick(now);
        let idle = self.cfg.idle_timeout_ms;
        let fin_wait2 = self.cfg.fin_wait2_timeout_ms;
        let ka = (self.cfg.keepalive_idle_ms, self.cfg.keepalive_outbound_idle_ms);
        let Some(c) = self.conn_mut(id) else { return };
        if c.state == State::FinWait2 && c.end_at.is_none() && fin_wait2 > 0 {
            c.end_at = Some(tick + fin_wait2);
        }
        if c.state == State::LastAck && c.end_at == Some(0) {
            return self.remove(id, End::Orderly);
        }
        if c.state == State::Established && c.flight() == 0 && c.end_at.is_none() {
            c.end_at = Some(tick + idle);
        } else if c.state == State::Established && c.flight() > 0 {
            c.end_at = None;
        }
        let ka_idle = if c.outbound { ka.1 } else { ka.0 };
        if ka_idle > 0 && c.state == State::Established && c.flight() == 0 {
            if c.ka_at.is_none() {
                c.ka_at = Some(c.last_active + ka_idle);
            }
        } else {
            c.ka_at = None;
            c.ka_probes = 0;
        }
        let _ = now;
        self.reschedule(id);
    }

    fn reschedule(&mut self, id: ConnId) {
        let Some(Some(c)) = self.slab.get_mut(id.idx() as usize) else { return };
        let Some(at) = c.next_deadline() else { return };
        if c.wheel_at.is_some_and(|w| w <= at) {
            return; // an earlier entry is queued; it will reschedule when it fires
        }
        c.wheel_at = Some(self.wheel.schedule(id.idx(), at));
    }

    fn arm_rtx(&mut self, id: ConnId, now: Instant) {
        let tick = self.tick(now);
        if let Some(c) = self.conn_mut(id) {
            c.rtx_at = Some(tick + c.rtt.backed_off(c.backoff).as_millis() as Tick);
        }
    }

    fn advance(&mut self, now: Instant, cx: &mut C, tx: &mut Tx<'_>) {
        let to = self.tick(now);
        if to <= self.wheel.now() {
            return;
        }
        let mut due = Vec::new();
        self.wheel.advance(to, |idx, at| due.push((idx, at)));
        for (idx, at) in due {
            let Some(Some(c)) = self.slab.get(idx as usize) else { continue };
            if c.wheel_at != Some(at) {
                continue; // stale entry
            }
            let id = ConnId::new(idx, c.gen);
            self.conn_mut(id).expect("exists").wheel_at = None;
            self.on_timer(id, now, to, cx, tx);
            self.reschedule(id);
        }
    }

    fn on_timer(&mut self, id: ConnId, now: Instant, tick: Tick, cx: &mut C, tx: &mut Tx<'_>) {
        let idle = self.cfg.idle_timeout_ms;
        let Some(c) = self.conn_mut(id) else { return };
        if c.delack_at.is_some_and(|d| d <= tick) {
            c.delack_at = None;
            c.ack_now = true;
            self.output(id, now, tx);
        }
        let Some(c) = self.conn_mut(id) else { return };
        if c.end_at.is_some_and(|d| d <= tick) {
            c.end_at = None;
            match c.state {
                State::TimeWait => return self.remove(id, End::Orderly),
                State::FinWait2 => {
                    // Linux's tcp_fin_timeout: a peer that took our FIN but never sends
                    // its own would hold the connection for ever.
                    self.counters.fin_wait2_timeouts += 1;
                    return self.abort_timed_out(id, tx);
                }
                State::Established if c.flight() == 0 && !c.app.as_ref().is_some_and(|a| a.idle()) => {
                    // Nothing in flight, but the app is still answering (a handler that
                    // waits): not idle. Look again a full timeout later.
                    c.end_at = Some(tick + idle);
                }
                State::Established if c.flight() == 0 => {
                    // Idle keep-alive connection: close it in order.
                    self.counters.idle_closed += 1;
                    return self.close_idle(id, now, cx, tx);
                }
                _ => {}
            }
        }
        let Some(c) = self.conn_mut(id) else { return };
        if c.rtx_at.is_some_and(|d| d <= tick) {
            c.rtx_at = None;
            c.probe_at = None;
            self.on_rto(id, now, tx);
        }
        let Some(c) = self.conn_mut(id) else { return };
        if c.probe_at.is_some_and(|d| d <= tick) {
            c.probe_at = None;
            if c.probe_is_tlp {
                self.on_tlp(id, now, tx);
            } else {
                // RACK's reordering timer: what it waited for is now lost or delivered.
                self.rack_detect(id, now);
                self.output(id, now, tx);
            }
        }
        let Some(c) = self.conn_mut(id) else { return };
        if c.ka_at.is_some_and(|d| d <= tick) {
            c.ka_at = None;
            self.on_keepalive(id, now, tick, tx);
        }
    }

    /// The probe timeout fired (RFC 8985 §7.3): send the last segment not known to be
    /// delivered again, and go on to the RTO.
    ///
    /// RFC 8985 says a probe SHOULD be new data when the windows allow. We always
    /// resend, on purpose: a duplicate must be acknowledged at once (RFC 9293
    /// §3.10.7.4; Linux answers it in quick-ack mode with a D-SACK), while new data may
    /// wait for the receiver's delayed ACK — measured on the testbed, a Linux client whose
    /// application lags held the ACK of a new-data probe 41–44 ms, which at 1 % loss was
    /// most of a 16 MiB transfer's time. A probe that was not needed costs one segment
    /// and comes back as a D-SACK.
    fn on_tlp(&mut self, id: ConnId, now: Instant, tx: &mut Tx<'_>) {
        let tick = self.tick(now);
        let Some(c) = self.conn_mut(id) else { return };
        let Some(b) = c.board.as_deref_mut() else { return };
        if c.recover.is_some() || b.lost > 0 || b.tlp.is_some() {
            return;
        }
        let Some(i) = b.records().rposition(|r| r.flags & sack::SACKED == 0) else { return };
        b.mark_lost(i);
        let saved = c.cwnd;
        c.cwnd = c.pipe() + c.mss; // room for exactly one segment
        self.counters.tlp_probes += 1;
        self.output(id, now, tx);
        let Some(c) = self.conn_mut(id) else { return };
        c.cwnd = saved;
        if let Some(b) = c.board.as_deref_mut() {
            b.tlp = Some(Tlp { end: c.snd_max, retrans: true });
        }
        c.probe_at = None;
        c.rtx_at = Some(tick + c.rtt.backed_off(c.backoff).as_millis() as Tick);
    }

    /// The keep-alive timer: probe with SEG.SEQ = SND.NXT − 1 (RFC 9293 §3.8.4), which
    /// any live peer answers with an ACK; reset after `keepalive_probes` unanswered.
    fn on_keepalive(&mut self, id: ConnId, now: Instant, tick: Tick, tx: &mut Tx<'_>) {
        let ts_now = self.ts_now(now);
        let (probes, interval) = (self.cfg.keepalive_probes, self.cfg.keepalive_interval_ms);
        let Some(Some(c)) = self.slab.get_mut(id.idx() as usize) else { return };
        if c.state != State::Established || c.flight() > 0 {
            return;
        }
        if u32::from(c.ka_probes) >= probes {
            let (t, seq) = (c.tuple, c.snd_nxt);
            let rst =
                Segment { src_port: t.local.port(), dst_port: t.remote.port(), seq, rst: true, ..Default::default() };
            self.counters.keepalive_timeouts += 1;
            self.counters.rst_sent += 1;
            self.counters.reset += 1;
            self.emit(tx, t.local, t.remote, rst);
            return self.remove(id, End::TimedOut);
        }
        let (win, adv) = Self::window_calc(&self.cfg, c);
        let seg = c.segment(c.snd_nxt.wrapping_sub(1), win, ts_now, 0);
        send_on(&mut self.counters, tx, c.tuple, seg);
        advertise(c, adv);
        c.ka_probes = c.ka_probes.saturating_add(1);
        c.ka_at = Some(tick + interval);
        self.counters.keepalive_probes += 1;
    }

    /// An idle keep-alive connection (nothing queued, nothing in flight): close it in
    /// order with a FIN.
    fn close_idle(&mut self, id: ConnId, now: Instant, _cx: &mut C, tx: &mut Tx<'_>) {
        let ts_now = self.ts_now(now);
        let now_us = self.us(now);
        let Some(Some(c)) = self.slab.get_mut(id.idx() as usize) else { return };
        let (win, adv) = Self::window_calc(&self.cfg, c);
        let seg = Segment { fin: true, ..c.segment(c.snd_nxt, win, ts_now, 0) };
        send_on(&mut self.counters, tx, c.tuple, seg);
        advertise(c, adv);
        c.fin_seq = Some(c.snd_nxt);
        c.state = State::FinWait1;
        c.closed_by_us = true;
        let start = c.snd_nxt;
        c.record_sent(start, 1, now_us, true, &mut self.spare_boards);
        c.snd_nxt = c.snd_nxt.wrapping_add(1);
        c.snd_max = c.snd_nxt;
        self.arm_rtx(id, now);
    }

    /// Resets a connection whose peer stopped taking part (retransmissions ran out, its
    /// window stayed shut, it never closed) and forgets it.
    fn abort_timed_out(&mut self, id: ConnId, tx: &mut Tx<'_>) {
        let Some(c) = self.conn(id) else { return };
        let (t, seq) = (c.tuple, c.snd_nxt);
        self.counters.rst_sent += 1;
        self.counters.reset += 1;
        let rst = Segment { src_port: t.local.port(), dst_port: t.remote.port(), seq, rst: true, ..Default::default() };
        self.emit(tx, t.local, t.remote, rst);
        self.remove(id, End::TimedOut);
    }

    fn on_rto(&mut self, id: ConnId, now: Instant, tx: &mut Tx<'_>) {
        let (syn_retries, data_retries) = (self.cfg.syn_retries, self.cfg.data_retries);
        let persist = self.cfg.persist_timeout_ms;
        let tick = self.tick(now);
        let ts_now = self.ts_now(now);
        let Some(c) = self.conn_mut(id) else { return };
        match c.state {
            State::SynReceived | State::SynSent => {
                c.backoff += 1;
                if c.backoff > syn_retries {
                    self.counters.syn_timeouts += 1;
                    return self.remove(id, End::TimedOut);
                }
                self.send_syn(id, now, tx);
                self.arm_rtx(id, now);
            }
            _ => {
                // A shut window holds back data, not a FIN: with only our FIN left to
                // deliver, the timer retransmits it and gives up after `data_retries`
                // like any other segment (the fuzzer found a connection in CLOSING, its
                // FIN unacknowledged behind a zero window, that no timer ever ended).
                let zero_window = c.snd_wnd == 0 && c.app.as_ref().is_some_and(|a| !a.send_queue().is_empty());
                if c.flight() == 0 && !zero_window {
                    return self.output(id, now, tx);
                }
                c.backoff += 1;
                if c.backoff > data_retries && !zero_window {
                    return self.abort_timed_out(id, tx);
                }
                if zero_window {
                    // A peer may keep its window shut while it answers every probe; past
                    // `persist_timeout_ms` that is a reader that holds memory and never
                    // reads (nginx's send_timeout plays this part).
                    let since = *c.zero_since.get_or_insert(tick);
                    if persist > 0 && tick.saturating_sub(since) >= persist {
                        self.counters.persist_timeouts += 1;
                        return self.abort_timed_out(id, tx);
                    }
                }
                if zero_window && c.flight() == 0 {
                    return self.window_probe(id, now, tx);
                }
                if let (Some(b), true) = (c.board.as_deref_mut(), zero_window) {
                    // The persist timer: the probe byte again; the window stays as it is.
                    b.mark_all_lost();
                    self.counters.window_probes += 1;
                    self.arm_rtx(id, now);
                    return self.output(id, now, tx);
                }
                if let Some(b) = c.board.as_deref_mut() {
                    // RFC 6675 §5.1 / RFC 8985 §6.3: everything not SACKed is lost; it
                    // is resent from the scoreboard as the window reopens. The first
                    // timeout of an episode remembers what to undo if it was spurious.
                    if b.undo.is_none() || !b.undo.is_some_and(|u| u.rto) {
                        let prior = b.undo.map_or((c.cwnd, c.ssthresh, c.cc), |u| (u.cwnd, u.ssthresh, u.cc));
                        b.undo = Some(Undo {
                            cwnd: prior.0,
                            ssthresh: prior.1,
                            cc: prior.2,
                            retrans: 0,
                            ts: if c.ts_ok { ts_now } else { 0 },
                            rto: true,
                            marker: c.snd_una,
                            end: c.snd_max,
                        });
                    }
                    b.renege_check();
                    b.mark_all_lost();
                    b.tlp = None;
                    if c.backoff == 1 && c.recover.is_none() {
                        c.ssthresh = c.cc.on_congestion(c.cwnd, c.flight(), c.mss);
                    }
                    c.cwnd = c.mss;
                    c.recover = None;
                    c.probe_at = None;
                    self.counters.rto_retransmits += 1;
                    self.arm_rtx(id, now);
                    return self.output(id, now, tx);
                }
                // RFC 5681 §3.1 / RFC 6298 §5: collapse the window, go back to SND.UNA.
                c.ssthresh = c.cc.on_congestion(c.cwnd, c.flight(), c.mss);
                c.cwnd = c.mss;
                c.recover = None;
                c.dupacks = 0;
                c.rtt_seq = None;
                c.snd_nxt = c.snd_una;
                self.counters.rto_retransmits += 1;
                self.arm_rtx(id, now);
                self.output(id, now, tx);
            }
        }
    }

    /// One byte past the zero window (RFC 9293 §3.8.6.1).
    fn window_probe(&mut self, id: ConnId, now: Instant, tx: &mut Tx<'_>) {
        let ts_now = self.ts_now(now);
        let now_us = self.us(now);
        let Some(Some(c)) = self.slab.get_mut(id.idx() as usize) else { return };
        let Some(app) = c.app.as_ref() else { return };
        let q = app.send_queue();
        let off = dist(c.snd_una, c.snd_nxt) as usize;
        if off >= q.len() {
            return;
        }
        let (win, adv) = Self::window_calc(&self.cfg, c);
        let seg = c.segment(c.snd_nxt, win, ts_now, 1);
        self.counters.window_probes += 1;
        send_data(&mut self.counters, tx, c.tuple, seg, Payload::of(q, off, 1));
        advertise(c, adv);
        if ge(c.snd_nxt, c.snd_max) {
            let start = c.snd_nxt;
            c.record_sent(start, 1, now_us, false, &mut self.spare_boards);
        }
        c.snd_nxt = c.snd_nxt.wrapping_add(1);
        if gt(c.snd_nxt, c.snd_max) {
            c.snd_max = c.snd_nxt;
        }
        self.arm_rtx(id, now);
    }
}
