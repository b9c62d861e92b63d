//! One core's run-to-completion loop over a [`PacketIo`], and the AF_XDP server that
//! runs one pinned loop per NIC queue.
//!
//! A turn: take at most `rx_batch` frames from the RX ring → hand each to the network
//! layer → run its timers → put what it produced on the TX ring and kick the kernel if it
//! asks. Adaptive polling: while frames flow the loop spins; after `idle_spin_us` without
//! any it sleeps in poll(2) on the socket (at most `idle_sleep_ms`, so timers and
//! shutdown are still seen), so an idle appliance uses about no CPU and a loaded one
//! never sleeps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::app::ControlPlane;
use crate::config::Config;
use crate::flow::{HttpCx, TcpHttp};
use crate::http::{DateCache, HttpStats};
use crate::mem::{ChunkPool, Region};
use crate::net::{FrameBatch, NetConfig, NetCounters, NetStack, SharedNeighbors};
use crate::nic::af_xdp::{iface_mac, XdpInterface, XskQueue};
use crate::nic::fault::Fault;
use crate::nic::pcap::{Pcap, PcapFile};
use crate::nic::{IoCounters, PacketIo};
use crate::runtime::AppSet;
use crate::runtime::StartError;
use crate::tcp::TcpCounters;
use std::rc::Rc;

/// Longest sleep while TCP connections are open.
const TCP_TICK: Duration = Duration::from_millis(10);
/// Frames kept for a full TX ring before the oldest are dropped.
const TX_BACKLOG_MAX: usize = 4096;

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
}

/// What one queue did, reported at shutdown.
#[derive(Debug, Clone, Default)]
pub struct QueueReport {
    /// Queue index.
    pub queue: usize,
    /// CPU the loop was pinned to (None if pinning failed).
    pub cpu: Option<usize>,
    /// Ring counters.
    pub io: IoCounters,
    /// Network-layer counters.
    pub net: NetCounters,
    /// Loop counters.
    pub turns: LoopCounters,
    /// TCP counters.
    pub tcp: TcpCounters,
    /// HTTP counters.
    pub http: HttpStats,
    /// TCP segments handed to the queue owning their flow, and those dropped (inbox full).
    pub forwarded: (u64, u64),
}

impl std::fmt::Display for QueueReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (io, n, t) = (&self.io, &self.net, &self.turns);
        write!(
            f,
            "queue {} (cpu {:?}): rx_packets={} rx_bytes={} tx_packets={} tx_bytes={} icmp_echo_replies={} \
             arp_replies_sent={} arp_requests_sent={} arp_learned={} drop_not_for_us={} drop_malformed={} \
             drop_bad_checksum={} drop_unsupported={} drop_not_our_ip={} drop_fragment={} drop_no_route={} \
             drop_arp_unresolved={} tcp_segments={} tx_ring_full={} fill_ring_short={} kernel_rx_dropped={} \
             injected_drops={} wakeups={} busy_turns={} idle_turns={} sleeps={} tx_backlog_drops={} \
             tcp_established={} tcp_closed={} tcp_reset={} tcp_rto_retransmits={} tcp_fast_retransmits={} \
             tcp_out_of_order={} tcp_syn_cookies_sent={} http_requests={} http_2xx={} http_4xx={} http_5xx={} \
             tcp_forwarded={} tcp_forward_drops={} tx_in_place={} http_body_bytes_by_reference={}",
            self.queue,
            self.cpu,
            io.rx_packets,
            io.rx_bytes,
            io.tx_packets,
            io.tx_bytes,
            n.icmp_echo_replies,
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
            t.busy_turns,
            t.idle_turns,
            t.sleeps,
            t.tx_backlog_drops,
            self.tcp.established,
            self.tcp.closed,
            self.tcp.reset,
            self.tcp.rto_retransmits,
            self.tcp.fast_retransmits,
            self.tcp.out_of_order,
            self.tcp.syn_cookies_sent,
            self.http.requests,
            self.http.responses_by_class[2],
            self.http.responses_by_class[4],
            self.http.responses_by_class[5],
            self.forwarded.0,
            self.forwarded.1,
            io.tx_in_place,
            self.http.body_bytes_by_reference
        )
    }
}

/// Sends what the backlog holds until the ring is full; returns frames sent.
fn send_backlog<P: PacketIo>(io: &mut P, out: &mut FrameBatch) -> usize {
    let mut sent = 0;
    for frame in out.iter() {
        if io.send(frame).is_err() {
            break;
        }
        sent += 1;
    }
    out.consume(sent);
    sent
}

/// A core loop over `io`.
pub struct PacketLoop<P> {
    io: P,
    net: NetStack,
    tcp: Option<TcpHttp>,
    out: FrameBatch,
    rx_batch: usize,
    idle_spin: Duration,
    idle_sleep: Duration,
    last_work: Instant,
    counters: LoopCounters,
}

impl<P: PacketIo> PacketLoop<P> {
    /// A loop taking at most `rx_batch` frames a turn.
    pub fn new(io: P, net: NetStack, rx_batch: usize, idle_spin: Duration, idle_sleep: Duration) -> Self {
        PacketLoop {
            io,
            net,
            tcp: None,
            out: FrameBatch::default(),
            rx_batch,
            idle_spin,
            idle_sleep,
            last_work: Instant::now(),
            counters: LoopCounters::default(),
        }
    }

    /// Serves TCP (and HTTP over it) with `tcp`.
    pub fn with_tcp(mut self, tcp: TcpHttp) -> Self {
        self.tcp = Some(tcp);
        self
    }

    /// One bounded turn at time `now`; returns frames received plus frames sent.
    pub fn turn(&mut self, now: Instant) -> usize {
        let PacketLoop { io, net, out, rx_batch, tcp, .. } = self;
        if let Some(t) = tcp.as_mut() {
            t.tick(SystemTime::now());
        }
        // Frames a full ring left behind go first, so order on the wire is kept.
        let mut sent = send_backlog(io, out);
        let received = io.recv_tx(*rx_batch, out, &mut |frame, sink| {
            if let Some(seg) = net.on_frame(frame, now, sink) {
                if let Some(t) = tcp.as_mut() {
                    t.on_segment(frame, seg, now, net, sink);
                }
            }
        });
        let mut forwarded = 0;
        sent += io.tx(out, &mut |sink| {
            if let Some(t) = tcp.as_mut() {
                for frame in t.take_forwarded(*rx_batch) {
                    forwarded += 1;
                    if let Some(seg) = net.on_frame(&frame, now, sink) {
                        t.on_segment(&frame, seg, now, net, sink);
                    }
                }
            }
            net.poll(now, sink);
            if let Some(t) = tcp.as_mut() {
                t.poll(now, net, sink);
            }
        });
        sent += send_backlog(io, out);
        if out.len() > TX_BACKLOG_MAX {
            let extra = out.len() - TX_BACKLOG_MAX;
            out.consume(extra);
            self.counters.tx_backlog_drops += extra as u64;
        }
        io.flush();
        received + sent + forwarded
    }

    /// Runs turns until `stop` is set, then drains (in-flight responses finish, new
    /// connections are refused) until no connection is active or `drain` has passed.
    pub fn run(&mut self, stop: &AtomicBool, drain: Duration) {
        self.run_with(stop, drain, &AtomicUsize::new(1));
    }

    /// As [`run`](Self::run), for one of several queues: a queue whose connections are
    /// done keeps answering (refusing new connections with RST) until `draining` — the
    /// number of queues still draining — reaches zero.
    pub fn run_with(&mut self, stop: &AtomicBool, drain: Duration, draining: &AtomicUsize) {
        let mut deadline: Option<Instant> = None;
        let mut done = false;
        loop {
            let now = Instant::now();
            if deadline.is_none() && stop.load(Ordering::Relaxed) {
                deadline = Some(now + drain);
                let PacketLoop { net, out, tcp, .. } = self;
                if let Some(t) = tcp.as_mut() {
                    t.begin_drain(now, net, out);
                }
            }
            if let Some(d) = deadline {
                if !done && self.tcp.as_ref().is_none_or(|t| t.active() == 0) {
                    done = true;
                    draining.fetch_sub(1, Ordering::AcqRel);
                }
                if now >= d || draining.load(Ordering::Acquire) == 0 {
                    // One last turn sends the final ACKs.
                    self.turn(now);
                    break;
                }
            }
            if self.turn(now) > 0 {
                self.counters.busy_turns += 1;
                self.last_work = now;
            } else {
                self.counters.idle_turns += 1;
                if now.duration_since(self.last_work) >= self.idle_spin && self.out.is_empty() {
                    // With connections open, wake often enough for TCP timers and
                    // control-thread answers.
                    let busy_tcp = self.tcp.as_ref().is_some_and(|t| t.engine.connections() > 0);
                    let sleep = if busy_tcp { self.idle_sleep.min(TCP_TICK) } else { self.idle_sleep };
                    self.io.wait(sleep);
                    self.counters.sleeps += 1;
                }
            }
        }
        self.io.flush();
    }

    /// Counters of the loop, the network layer and the rings.
    pub fn report(&self, queue: usize, cpu: Option<usize>) -> QueueReport {
        QueueReport {
            queue,
            cpu,
            io: self.io.counters(),
            net: self.net.counters(),
            turns: self.counters,
            tcp: self.tcp.as_ref().map(|t| t.engine.counters()).unwrap_or_default(),
            http: self.tcp.as_ref().map(|t| t.cx.stats.clone()).unwrap_or_default(),
            forwarded: self.tcp.as_ref().map_or((0, 0), |t| (t.forwarded, t.forward_drops)),
        }
    }

    /// The I/O backend (for tests).
    pub fn io_mut(&mut self) -> &mut P {
        &mut self.io
    }
}

/// The running AF_XDP backend.
pub struct XdpServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<QueueReport>>,
    iface: Option<XdpInterface>,
    /// "native" or "generic".
    pub attach_mode: &'static str,
    /// True if the sockets got zero-copy.
    pub zerocopy: bool,
    plane: Option<ControlPlane>,
}

impl XdpServer {
    /// Opens the queues, attaches the program and starts one pinned loop per queue.
    pub fn start(cfg: &Config, apps: Arc<AppSet>) -> Result<XdpServer, StartError> {
        let x = &cfg.af_xdp;
        let (ip, prefix_len) = NetConfig::parse_cidr(&x.ip).map_err(StartError::Unavailable)?;
        let gateway = match x.gateway.as_str() {
            "" => None,
            g => Some(
                g.parse()
                    .map_err(|_| StartError::Unavailable(format!("af_xdp.gateway {g:?} is not an IPv4 address")))?,
            ),
        };
        let (iface, socks) =
            XdpInterface::open(x, cfg.server.queues).map_err(|e| StartError::Unavailable(e.to_string()))?;
        let mac = iface_mac(&x.iface).map_err(|source| StartError::Io { what: "reading the interface MAC", source })?;
        let net_cfg = NetConfig { mac, ip, prefix_len, gateway };
        let pcap = match &x.pcap {
            Some(p) => {
                Some(PcapFile::create(p).map_err(|source| StartError::Io { what: "creating the pcap file", source })?)
            }
            None => None,
        };
        let neighbors: Arc<SharedNeighbors> = Arc::default();
        let directory = crate::flow::FlowDirectory::new(cfg.server.queues);
        let draining = Arc::new(AtomicUsize::new(cfg.server.queues));
        // One key for all queues: any queue can check a SYN cookie another one issued.
        let secret = random_secret();
        let stop = Arc::new(AtomicBool::new(false));
        // Default pinning: the NIC's NUMA node's CPUs in order (all CPUs if sysfs is silent).
        let node_cpus = crate::mem::node_cpus(crate::nic::af_xdp::iface_numa_node(&x.iface));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let zerocopy = socks.iter().all(XskQueue::zerocopy);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let plane = ControlPlane::start_with(cfg.control.queue_depth, cfg.control.io_threads)
            .map_err(|source| StartError::Io { what: "spawning the control thread", source })?;
        let mut threads = Vec::new();
        for (queue, mut sock) in socks.into_iter().enumerate() {
            let bell = Arc::new(
                crate::nic::af_xdp::Doorbell::new()
                    .map_err(|source| StartError::Io { what: "creating an eventfd", source })?,
            );
            sock.set_doorbell(bell.clone());
            let cpu = match (cfg.server.cores.is_empty(), node_cpus.is_empty()) {
                (true, false) => node_cpus[queue % node_cpus.len()],
                _ => cfg.core_for_queue(queue, cpus),
            };
            let mut io: Box<dyn PacketIo + Send> = Box::new(sock);
            if let Some(file) = &pcap {
                io = Box::new(Pcap::new(io, file.clone()));
            }
            if x.faults.any() {
                let mut faults = x.faults;
                faults.seed = faults.seed.wrapping_add(queue as u64);
                io = Box::new(Fault::new(io, faults));
            }
            let net = NetStack::new(net_cfg, neighbors.clone());
            let control = plane.handle();
            control.set_waker(Box::new(move || bell.ring()));
            let apps = apps.clone();
            let (tcp_cfg, limits, arena) = (cfg.tcp.clone(), cfg.http.clone(), cfg.arena.clone());
            let port = cfg.server.listen.port();
            let directory = directory.clone();
            let drain = Duration::from_millis(cfg.server.shutdown_timeout_ms);
            let draining = draining.clone();
            let (rx_batch, spin, sleep) =
                (x.rx_batch, Duration::from_micros(x.idle_spin_us), Duration::from_millis(x.idle_sleep_ms));
            let stop = stop.clone();
            let ready = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("px-xdp-{queue}"))
                .spawn(move || {
                    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    // Mapped on the pinned core: first touch is NUMA-local as well as bound.
                    let region =
                        match Region::map(arena.pool_bytes_per_core, crate::mem::cpu_numa_node(cpu), arena.hugepages) {
                            Ok(r) => r,
                            Err(e) => {
                                let _ = ready.send(Err(format!("queue {queue}: arena memory: {e}")));
                                return QueueReport { queue, ..Default::default() };
                            }
                        };
                    let pool = Rc::new(ChunkPool::new(region, arena.chunk_bytes));
                    let now = SystemTime::now();
                    let mut date = DateCache::default();
                    date.update(now);
                    let cx = HttpCx {
                        apps,
                        limits,
                        arena_cap: arena.max_bytes_per_conn,
                        pool,
                        control,
                        date,
                        stats: HttpStats::default(),
                        now,
                    };
                    let tcp = TcpHttp::new(tcp_cfg, port, cx, Instant::now(), secret).with_directory(directory, queue);
                    let mut lp = PacketLoop::new(io, net, rx_batch, spin, sleep).with_tcp(tcp);
                    let _ = ready.send(Ok(()));
                    lp.run_with(&stop, drain, &draining);
                    lp.report(queue, pinned.then_some(cpu))
                })
                .map_err(|source| StartError::Io { what: "spawning a queue thread", source })?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("a queue thread died during start".into()),
            }
        }
        let attach_mode = iface.attach_mode;
        let server = XdpServer { stop, threads, iface: Some(iface), attach_mode, zerocopy, plane: Some(plane) };
        if let Some(e) = failure {
            server.shutdown_trigger()();
            server.join();
            return Err(StartError::Unavailable(e));
        }
        Ok(server)
    }

    /// A callable that stops every loop.
    pub fn shutdown_trigger(&self) -> Arc<dyn Fn() + Send + Sync> {
        let stop = self.stop.clone();
        Arc::new(move || stop.store(true, Ordering::Release))
    }

    /// Waits for the loops, then detaches the program.
    pub fn join(mut self) -> Vec<QueueReport> {
        let reports = self.threads.drain(..).filter_map(|t| t.join().ok()).collect();
        drop(self.iface.take());
        if let Some(p) = self.plane.take() {
            p.shutdown();
        }
        reports
    }
}

/// A per-process random key for ISNs and SYN cookies.
fn random_secret() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nic::loopback::Loopback;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::*;

    #[test]
    fn loop_answers_pings_over_the_loopback_and_counts() {
        let (peer, ours) = Loopback::pair(1024);
        let mut peer = peer;
        let cfg =
            NetConfig { mac: [2, 0, 0, 0, 0, 1], ip: "10.99.0.1".parse().unwrap(), prefix_len: 24, gateway: None };
        let mut lp = PacketLoop::new(ours, NetStack::new(cfg, Arc::default()), 64, Duration::ZERO, Duration::ZERO);
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
            peer.send(&buf).unwrap();
        }
        // The first turn asks ARP for the peer (one request), the replies wait.
        lp.turn(Instant::now());
        let mut got = Vec::new();
        peer.recv(64, &mut |f| got.push(f.to_vec()));
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
        peer.send(&buf).unwrap();
        lp.turn(Instant::now());
        got.clear();
        peer.recv(64, &mut |f| got.push(f.to_vec()));
        assert_eq!(got.len(), 10);
        let r = lp.report(0, None);
        assert_eq!((r.net.icmp_echo_replies, r.io.rx_packets, r.io.tx_packets), (10, 11, 11));
        assert!(r.to_string().contains("icmp_echo_replies=10"));
    }
}
