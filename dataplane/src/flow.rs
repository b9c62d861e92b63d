//! The wire glue of the AF_XDP path: TCP segments in frames ↔ the TCP engine ↔ one
//! HTTP engine per connection.
//!
//! [`HttpFlow`] is the TCP engine's application: its send queue is the HTTP engine's
//! output queue (no copy into a separate TCP buffer), acknowledged bytes are consumed
//! from it, and so the connection's arena is rewound when the last byte of a burst of
//! responses is acknowledged — or when the connection goes away and the flow is dropped.
//!
//! Segments are built in place in the sink's frame (a UMEM TX frame on AF_XDP): headers
//! emitted there, the payload gathered there from the output queue's pieces — response
//! heads, and bodies still in the arena — and the TCP checksum computed over the frame.
//! A body the arena holds is copied exactly once, into the frame.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;
use std::time::{Instant, SystemTime};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

use crate::app::ControlHandle;
use crate::http::{DateCache, Env, HttpConn, HttpLimits, HttpStats};
use crate::mem::{Arena, ChunkPool};
use crate::net::{NetStack, TcpIn, TxSink};
use crate::runtime::AppSet;
use crate::tcp::{ConnId, Engine, Segment, SegmentOut, SendQueue, TcpApp, TcpConfig};

/// What every HTTP flow of one core shares.
pub struct HttpCx {
    /// Routes and shared state.
    pub apps: Arc<AppSet>,
    /// HTTP limits.
    pub limits: HttpLimits,
    /// Arena cap per connection.
    pub arena_cap: usize,
    /// The core's arena pool.
    pub pool: Rc<ChunkPool>,
    /// The core's control-plane handle.
    pub control: ControlHandle,
    /// The Date header cache.
    pub date: DateCache,
    /// HTTP counters.
    pub stats: HttpStats,
    /// Wall-clock time of this turn.
    pub now: SystemTime,
}

impl HttpCx {
    fn env(&mut self, id: ConnId) -> Env<'_> {
        Env {
            now: self.now,
            date: &self.date,
            limits: &self.limits,
            router: &self.apps.router,
            shared: &self.apps.shared,
            control: &self.control,
            conn_id: id.0,
            stats: &mut self.stats,
        }
    }
}

/// One HTTP connection on the TCP engine.
pub struct HttpFlow {
    http: HttpConn,
}

impl TcpApp<HttpCx> for HttpFlow {
    fn open(_: ConnId, cx: &mut HttpCx) -> Self {
        HttpFlow { http: HttpConn::new(Arena::new(cx.pool.clone(), cx.arena_cap), &cx.limits) }
    }

    fn received(&mut self, data: &[u8], id: ConnId, cx: &mut HttpCx) {
        self.http.receive(data, &mut cx.env(id));
    }

    fn peer_closed(&mut self, _: ConnId, _: &mut HttpCx) {
        self.http.peer_closed();
    }

    fn send_queue(&self) -> &dyn SendQueue {
        self
    }

    fn acked(&mut self, n: usize, id: ConnId, cx: &mut HttpCx) {
        self.http.consume(n, &mut cx.env(id));
    }

    fn finishing(&self) -> bool {
        self.http.finishing()
    }

    fn buffered(&self) -> usize {
        self.http.buffered_input()
    }
}

impl SendQueue for HttpFlow {
    fn len(&self) -> usize {
        self.http.output_len()
    }
    fn copy_out(&self, off: usize, dst: &mut [u8]) {
        self.http.copy_output(off, dst);
    }
}

/// Which queue owns each TCP flow, for segments that arrive on another queue.
///
/// A NIC's RSS hashes the 4-tuple, so a flow's segments stay on one queue. Software
/// steering does not always: on veth the receive queue follows the sender's transmit
/// queue, and Linux picks a new one when it retransmits. The directory is consulted only
/// for segments whose tuple the local engine does not know (new connections and strays),
/// and a stray frame is handed to its owner's bounded inbox.
pub struct FlowDirectory {
    owners: Mutex<HashMap<(SocketAddrV4, SocketAddrV4), usize>>,
    inboxes: Vec<ArrayQueue<Vec<u8>>>,
}

/// Frames waiting in one queue's inbox at most.
const INBOX_FRAMES: usize = 4096;

impl FlowDirectory {
    /// A directory for `queues` queues.
    pub fn new(queues: usize) -> Arc<FlowDirectory> {
        Arc::new(FlowDirectory {
            owners: Mutex::new(HashMap::new()),
            inboxes: (0..queues).map(|_| ArrayQueue::new(INBOX_FRAMES)).collect(),
        })
    }

    fn owner(&self, key: (SocketAddrV4, SocketAddrV4)) -> Option<usize> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied()
    }
}

/// The TCP engine with HTTP flows, as one core runs it.
pub struct TcpHttp {
    /// The engine.
    pub engine: Engine<HttpFlow, HttpCx>,
    /// Its context.
    pub cx: HttpCx,
    caps: ChecksumCapabilities,
    directory: Option<(Arc<FlowDirectory>, usize)>,
    /// Segments handed to another queue's inbox.
    pub forwarded: u64,
    /// Segments dropped because the owner's inbox was full.
    pub forward_drops: u64,
}

impl TcpHttp {
    /// An engine listening on `port`.
    pub fn new(cfg: TcpConfig, port: u16, cx: HttpCx, now: Instant, secret: u64) -> TcpHttp {
        let mut engine = Engine::new(cfg, now, secret);
        engine.listen(port);
        TcpHttp { engine, cx, caps: ChecksumCapabilities::default(), directory: None, forwarded: 0, forward_drops: 0 }
    }

    /// Shares flow ownership with the other queues through `dir`; this is queue `me`.
    pub fn with_directory(mut self, dir: Arc<FlowDirectory>, me: usize) -> Self {
        self.engine.track_lifecycle(true);
        self.directory = Some((dir, me));
        self
    }

    /// Graceful shutdown: refuse new connections, let every HTTP connection finish what
    /// it is answering (then FIN), and send what that produced.
    pub fn begin_drain(&mut self, now: Instant, net: &mut NetStack, out: &mut dyn TxSink) {
        self.engine.stop_listening();
        let mut ids = Vec::new();
        self.engine.for_each_app(|id, flow| {
            flow.http.begin_drain();
            ids.push(id);
        });
        let caps = &self.caps;
        for id in ids {
            self.engine.kick(id, now, &mut self.cx, &mut |so| emit(caps, so, now, net, out));
        }
    }

    /// Connections not yet done (TIME-WAIT excluded).
    pub fn active(&self) -> usize {
        self.engine.active_connections()
    }

    /// Frames other queues handed to this one (call once per turn).
    pub fn take_forwarded(&mut self, max: usize) -> Vec<Vec<u8>> {
        let Some((dir, me)) = &self.directory else { return Vec::new() };
        let inbox = &dir.inboxes[*me];
        (0..max).map_while(|_| inbox.pop()).collect()
    }

    /// Publishes connections created and removed since the last call.
    fn sync_directory(&mut self) {
        let Some((dir, me)) = &self.directory else { return };
        let changes = self.engine.take_lifecycle();
        if changes.is_empty() {
            return;
        }
        let mut owners = dir.owners.lock().unwrap_or_else(|e| e.into_inner());
        for (local, remote, created) in changes {
            if created {
                owners.insert((local, remote), *me);
            } else if owners.get(&(local, remote)) == Some(me) {
                owners.remove(&(local, remote));
            }
        }
    }

    /// Refreshes the clock-derived state once per turn.
    pub fn tick(&mut self, wall: SystemTime) {
        self.cx.now = wall;
        self.cx.date.update(wall);
    }

    /// Hands one checksum-verified segment (located in `frame` by `t`) to the engine,
    /// or to the queue that owns its flow.
    pub fn on_segment(&mut self, frame: &[u8], t: TcpIn, now: Instant, net: &mut NetStack, out: &mut dyn TxSink) {
        let bytes = &frame[t.start..t.start + t.len];
        if let (Some((dir, me)), true) = (&self.directory, bytes.len() >= 4) {
            let sport = u16::from_be_bytes([bytes[0], bytes[1]]);
            let dport = u16::from_be_bytes([bytes[2], bytes[3]]);
            let (local, remote) = (SocketAddrV4::new(t.dst, dport), SocketAddrV4::new(t.src, sport));
            if !self.engine.knows(local, remote) {
                if let Some(owner) = dir.owner((local, remote)).filter(|o| o != me) {
                    if dir.inboxes[owner].push(frame.to_vec()).is_ok() {
                        self.forwarded += 1;
                    } else {
                        self.forward_drops += 1;
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
        let caps = &self.caps;
        self.engine.on_segment(now, t.dst, t.src, &seg, &mut self.cx, &mut |so| emit(caps, so, now, net, out));
        self.sync_directory();
    }

    /// Timers and control-thread answers.
    pub fn poll(&mut self, now: Instant, net: &mut NetStack, out: &mut dyn TxSink) {
        let caps = &self.caps;
        self.engine.poll(now, &mut self.cx, &mut |so| emit(caps, so, now, net, out));
        let mut answers = Vec::new();
        self.cx.control.drain(|id, r| answers.push((ConnId(id), r)));
        for (id, resp) in answers {
            if let Some(flow) = self.engine.app_mut(id) {
                flow.http.complete_deferred(resp, &mut self.cx.env(id));
                self.engine.kick(id, now, &mut self.cx, &mut |so| emit(caps, so, now, net, out));
            }
        }
        self.sync_directory();
    }
}

/// Builds IPv4 + TCP for `so` in place in the sink's frame (via the neighbour table):
/// headers emitted, payload gathered from the send queue, then the TCP checksum.
fn emit(caps: &ChecksumCapabilities, so: &SegmentOut<'_>, now: Instant, net: &mut NetStack, out: &mut dyn TxSink) {
    let tcp = so.seg.to_repr();
    let header = tcp.header_len();
    let ip = Ipv4Repr {
        src_addr: *so.src.ip(),
        dst_addr: *so.dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: header + so.payload.len(),
        hop_limit: 64,
    };
    let len = ip.buffer_len() + header + so.payload.len();
    let mut no_tcp_sum = caps.clone();
    no_tcp_sum.tcp = smoltcp::phy::Checksum::None;
    net.send_ipv4_with(*so.dst.ip(), len, now, out, |buf| {
        let mut p = Ipv4Packet::new_unchecked(&mut *buf);
        ip.emit(&mut p, caps);
        let seg = p.payload_mut();
        // The frame may hold an old frame's bytes; option padding must be zero.
        seg[..header].fill(0);
        let mut t = TcpPacket::new_unchecked(&mut *seg);
        tcp.emit(&mut t, &ip.src_addr.into(), &ip.dst_addr.into(), &no_tcp_sum);
        so.payload.copy_to(&mut seg[header..]);
        TcpPacket::new_unchecked(&mut *seg).fill_checksum(&ip.src_addr.into(), &ip.dst_addr.into());
    });
}
