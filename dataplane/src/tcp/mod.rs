//! The userspace TCP engine, sans-I/O: (segment, now) in → segments out, with the
//! application's bytes exchanged through the [`TcpApp`] trait.
//!
//! Per core, one [`Engine`] holds every connection of that core's queue: a 4-tuple hash
//! map in front of a slab (O(1) per segment at any connection count), listening ports, a
//! bounded SYN queue with SYN cookies when it overflows, and a hashed timer wheel in
//! which each connection keeps one entry for its earliest deadline (nothing scans all
//! connections). The application owns the send queue: the engine names unacknowledged
//! bytes of [`TcpApp::send_queue`] in the segments it emits ([`Payload`]: queue, offset,
//! length; the caller gathers them straight into the frame) and releases them with
//! [`TcpApp::acked`], so the HTTP engine's output queue *is* the TCP send buffer, and
//! its arena is rewound when the response's last byte is acknowledged.
//!
//! What is implemented, with its RFC, is listed in docs/tcp.md.

pub mod cc;
mod engine;
pub mod rtt;
pub mod sack;
mod segment;
pub mod seq;
mod wheel;

use serde::{Deserialize, Serialize};

pub use cc::Congestion;
pub use engine::{Census, ConnId, End, Ended, Engine, Payload, SegmentOut, State, TcpCounters};
pub use segment::Segment;

/// What the engine needs from the application on each connection. `C` is context the
/// caller passes through (for HTTP: routes, the Date cache, counters).
pub trait TcpApp<C>: Sized {
    /// A connection was established (passive or active open).
    fn open(id: ConnId, cx: &mut C) -> Self;
    /// An active open given its application up front ([`Engine::connect_with`]) was
    /// established.
    fn connected(&mut self, _id: ConnId, _cx: &mut C) {}
    /// In-order bytes arrived.
    fn received(&mut self, data: &[u8], id: ConnId, cx: &mut C);
    /// The peer sent FIN (no more bytes will arrive).
    fn peer_closed(&mut self, id: ConnId, cx: &mut C);
    /// Bytes to send, from the oldest unacknowledged one.
    fn send_queue(&self) -> &dyn SendQueue;
    /// The first `n` bytes of the send queue were acknowledged.
    fn acked(&mut self, n: usize, id: ConnId, cx: &mut C);
    /// True once the application will add nothing more: FIN follows the queue.
    fn finishing(&self) -> bool;
    /// Received bytes the application holds but has not processed (shrinks our window).
    fn buffered(&self) -> usize;
    /// False while the application is still answering (a request whose handler waits):
    /// the idle timer then does not close the connection.
    fn idle(&self) -> bool {
        true
    }
}

/// An application's send queue as the engine reads it: a length, and bytes copied out
/// on demand (the queue may be pieces in several places, as the HTTP engine's is).
pub trait SendQueue {
    /// Bytes queued, from the oldest unacknowledged one.
    fn len(&self) -> usize;
    /// True when nothing is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies bytes `off..off + dst.len()` into `dst` (the range is inside the queue).
    fn copy_out(&self, off: usize, dst: &mut [u8]);
}

impl SendQueue for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn copy_out(&self, off: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self[off..off + dst.len()]);
    }
}

/// `[tcp]`: the TCP engine's knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// MSS we announce (payload bytes per segment we accept); 1460 fits a 1500 MTU.
    pub mss: u16,
    /// Receive window per connection in bytes (what a peer may send unacknowledged).
    pub recv_window_bytes: u32,
    /// Window-scale shift we offer (RFC 7323), 0..=14.
    pub window_scale: u8,
    /// Offer and accept timestamps (RFC 7323: RTT measurement and PAWS).
    pub timestamps: bool,
    /// Half-open connections held per core before SYN cookies take over.
    pub syn_backlog: usize,
    /// Answer SYNs with cookies when the SYN queue is full (else drop them).
    pub syn_cookies: bool,
    /// Initial retransmission timeout (RFC 6298: 1 s).
    pub rto_initial_ms: u64,
    /// Lowest RTO (RFC 6298 says 1 s; Linux uses 200 ms).
    pub rto_min_ms: u64,
    /// Highest RTO.
    pub rto_max_ms: u64,
    /// SYN-ACK retransmissions before a half-open connection is dropped.
    pub syn_retries: u32,
    /// Data retransmissions in a row before the connection is reset.
    pub data_retries: u32,
    /// Delay before a lone ACK is sent (0: ACK every segment at once).
    pub delayed_ack_ms: u64,
    /// Close an established connection with nothing in flight after this long idle.
    pub idle_timeout_ms: u64,
    /// TIME_WAIT duration (RFC 9293 says 2 MSL = 4 min; short here on purpose).
    pub time_wait_ms: u64,
    /// FIN-WAIT-2 lasts at most this long: our FIN was acknowledged and the peer's never
    /// came; then RST (Linux's `tcp_fin_timeout`; 0: wait for ever).
    pub fin_wait2_timeout_ms: u64,
    /// The peer's window may stay shut on data we have to send at most this long, probes
    /// answered or not; then RST (0: probe for ever, as RFC 9293 allows).
    pub persist_timeout_ms: u64,
    /// Initial congestion window in segments (RFC 6928).
    pub initial_cwnd_segments: u32,
    /// Most connections per core; SYNs beyond are dropped.
    pub max_connections: usize,
    /// Most connections one source address may hold on a core (half-open ones
    /// included); a SYN beyond gets an RST (0: no limit).
    pub max_connections_per_source: usize,
    /// Offer and accept SACK (RFC 2018), which brings RACK-TLP loss detection (RFC 8985).
    pub sack: bool,
    /// Congestion control: `cubic` (RFC 9438) or `newreno` (RFC 5681/6582).
    pub congestion: Congestion,
    /// HyStart++ (RFC 9406) in each connection's first slow start: leave it when the
    /// RTT rises, before the queue it fills overflows.
    pub hystart: bool,
    /// Keep-alive probes on connections we accepted after this long idle (0: off).
    pub keepalive_idle_ms: u64,
    /// Keep-alive probes on connections we opened (outbound clients) after this long
    /// idle (0: off).
    pub keepalive_outbound_idle_ms: u64,
    /// Time between unanswered keep-alive probes.
    pub keepalive_interval_ms: u64,
    /// Unanswered probes before the connection is reset.
    pub keepalive_probes: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mss: 1460,
            recv_window_bytes: 256 << 10,
            window_scale: 7,
            timestamps: true,
            syn_backlog: 1024,
            syn_cookies: true,
            rto_initial_ms: 1000,
            rto_min_ms: 200,
            rto_max_ms: 60_000,
            syn_retries: 5,
            data_retries: 12,
            delayed_ack_ms: 40,
            idle_timeout_ms: 60_000,
            time_wait_ms: 2000,
            fin_wait2_timeout_ms: 60_000,
            persist_timeout_ms: 120_000,
            initial_cwnd_segments: 10,
            max_connections: 1 << 20,
            max_connections_per_source: 0,
            sack: true,
            congestion: Congestion::Cubic,
            hystart: true,
            keepalive_idle_ms: 0,
            keepalive_outbound_idle_ms: 30_000,
            keepalive_interval_ms: 10_000,
            keepalive_probes: 6,
        }
    }
}

impl TcpConfig {
    /// Range checks; the error names the key (relative to `[tcp]`) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(536..=9000).contains(&self.mss) {
            return Err(("mss", format!("must be 536..=9000, got {}", self.mss)));
        }
        if self.window_scale > 14 {
            return Err(("window_scale", "must be 0..=14".into()));
        }
        if self.recv_window_bytes < u32::from(self.mss) || self.recv_window_bytes > (65535 << self.window_scale) {
            return Err((
                "recv_window_bytes",
                format!("must be mss..=65535 << window_scale ({})", 65535u32 << self.window_scale),
            ));
        }
        if self.rto_min_ms == 0 || self.rto_min_ms > self.rto_max_ms || self.rto_initial_ms > self.rto_max_ms {
            return Err(("rto_min_ms", "need 0 < rto_min_ms <= rto_initial_ms, rto_max_ms".into()));
        }
        if self.syn_backlog == 0 || self.max_connections == 0 || self.initial_cwnd_segments == 0 {
            return Err((
                "syn_backlog",
                "syn_backlog, max_connections and initial_cwnd_segments must be positive".into(),
            ));
        }
        let ka = self.keepalive_idle_ms > 0 || self.keepalive_outbound_idle_ms > 0;
        if ka && (self.keepalive_interval_ms == 0 || self.keepalive_probes == 0) {
            return Err((
                "keepalive_interval_ms",
                "keep-alive is on: keepalive_interval_ms and keepalive_probes must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
