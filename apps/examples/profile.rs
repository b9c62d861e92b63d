//! The whole packet path of one request, in one process, for instruction counts:
//! a scripted client puts Ethernet frames on an in-memory link; the server is the
//! appliance's own packet transport (network layer, TCP engine, HTTP engine, the tfb
//! app) turning as a core loop does. `scripts/profile.sh` runs it under callgrind with
//! collection limited to [`server_step`], so the client's work is not counted.
//!
//! ```text
//! cargo run --release -p px-apps --example profile -- json 20000
//! cargo run --release -p px-apps --example profile -- plaintext 20000   # pipelined ×16
//! ```
//!
//! Prints one JSON line: requests, and per request the server's frames in and out,
//! loop turns, pure ACKs the client received, and the wall time (which means little
//! under callgrind; the instruction counts are the figure).

use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use px_dataplane::app::{ControlPlane, Dispatch, DispatchConfig};
use px_dataplane::http::HttpLimits;
use px_dataplane::mem::{ChunkPool, HugepagePolicy, Region, HUGEPAGE_BYTES};
use px_dataplane::net::{NetConfig, NetStack};
use px_dataplane::nic::loopback::Loopback;
use px_dataplane::nic::PacketIo;
use px_dataplane::tcp::TcpConfig;
use px_dataplane::transport::stack::{Polling, StackTransport};
use px_dataplane::transport::Transport;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress,
    IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const PORT: u16 = 8080;

/// The client end of one connection: builds frames, reads the server's.
struct Client {
    io: Loopback,
    port: u16,
    seq: u32,
    ack: u32,
    ts_recent: u32,
    responses: usize,
    carry: Vec<u8>,
    pure_acks: u64,
}

impl Client {
    /// Asks for the server's MAC; the server learns ours from the request (RFC 826).
    fn arp_request(&mut self) {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(CLIENT_MAC),
            source_protocol_addr: CLIENT_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: SERVER_IP,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(CLIENT_MAC),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
        self.io.send(Instant::now(), &buf).expect("link has room");
    }

    fn frame(&mut self, control: TcpControl, payload: &[u8]) {
        let syn = control == TcpControl::Syn;
        let tcp = TcpRepr {
            src_port: self.port,
            dst_port: PORT,
            control,
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: (!syn).then_some(TcpSeqNumber(self.ack as i32)),
            window_len: if syn { 65535 } else { 16384 },
            window_scale: syn.then_some(7),
            max_seg_size: syn.then_some(1460),
            sack_permitted: syn,
            sack_ranges: [None; 3],
            timestamp: Some(TcpTimestampRepr { tsval: self.seq, tsecr: self.ts_recent }),
            payload,
        };
        let (src, dst) = (CLIENT_IP, SERVER_IP);
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Tcp,
            payload_len: tcp.buffer_len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress(CLIENT_MAC),
            dst_addr: EthernetAddress(SERVER_MAC),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut p, &caps);
        tcp.emit(&mut TcpPacket::new_unchecked(p.payload_mut()), &IpAddress::Ipv4(src), &IpAddress::Ipv4(dst), &caps);
        self.io.send(Instant::now(), &buf).expect("link has room");
        self.seq = self.seq.wrapping_add(payload.len() as u32 + u32::from(syn));
    }

    /// Reads what the server sent: takes its sequence numbers and timestamps, counts
    /// complete responses and pure ACKs.
    fn drain(&mut self) {
        let mut frames = Vec::new();
        self.io.recv(Instant::now(), usize::MAX, &mut |f| frames.push(f.to_vec()));
        for f in frames {
            let eth = EthernetFrame::new_checked(&f[..]).expect("ethernet");
            if eth.ethertype() != EthernetProtocol::Ipv4 {
                continue; // the ARP reply
            }
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
            let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
            if let Some(ts) = timestamp(tcp.options()) {
                self.ts_recent = ts;
            }
            let data = tcp.payload();
            if tcp.syn() {
                self.ack = (tcp.seq_number().0 as u32).wrapping_add(1);
                continue;
            }
            if data.is_empty() {
                self.pure_acks += 1;
                continue;
            }
            self.ack = (tcp.seq_number().0 as u32).wrapping_add(data.len() as u32);
            self.carry.extend_from_slice(data);
            let starts = memchr::memmem::find_iter(&self.carry, b"HTTP/1.1 200").count();
            self.responses += starts;
            // Keep only what could begin a status line cut by the segment boundary.
            let keep = self.carry.len().min(11);
            self.carry.drain(..self.carry.len() - keep);
        }
    }
}

/// The TSval of a TCP timestamp option.
fn timestamp(mut opts: &[u8]) -> Option<u32> {
    while let Some(&kind) = opts.first() {
        match kind {
            0 => break,
            1 => opts = &opts[1..],
            _ => {
                let len = *opts.get(1)? as usize;
                if len < 2 || len > opts.len() {
                    break;
                }
                if kind == 8 && len == 10 {
                    return Some(u32::from_be_bytes(opts[2..6].try_into().ok()?));
                }
                opts = &opts[len..];
            }
        }
    }
    None
}

/// One turn of the server's core loop (what `run_core` does between waits): the
/// function callgrind's collection is limited to.
#[inline(never)]
fn server_step(t: &mut StackTransport<Loopback>, d: &mut Dispatch) -> usize {
    let now = Instant::now();
    d.tick(SystemTime::now(), now);
    px_dataplane::runtime::turn(t, d, now)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "json".into());
    let requests: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let (path, depth) = match workload.as_str() {
        "json" => ("/json", 1),
        "plaintext" => ("/plaintext", 16),
        w => {
            eprintln!("profile: workload is json or plaintext, not {w}");
            std::process::exit(2);
        }
    };
    let one = format!("GET {path} HTTP/1.1\r\nHost: 10.99.0.1:8080\r\nConnection: keep-alive\r\n\r\n");
    let batch = one.repeat(depth);

    let apps = px_apps::mount(&["tfb".to_string()]).expect("tfb mounts");
    let plane = ControlPlane::start(64).expect("control plane");
    let pool = Rc::new(ChunkPool::new(Region::map(4 * HUGEPAGE_BYTES, None, HugepagePolicy::Off).unwrap(), 64 << 10));
    let cfg = DispatchConfig {
        limits: HttpLimits::default(),
        arena_cap: 4 << 20,
        deadline: Duration::from_secs(5),
        max_in_flight: 1024,
        file_reads: 512,
    };
    let mut d = Dispatch::new(Arc::new(apps), cfg, pool, plane.handle());
    let (server_io, client_io) = Loopback::pair(4096);
    let net = NetStack::new(
        NetConfig { mac: SERVER_MAC, ip: SERVER_IP, prefix_len: 24, gateway: None, ip6: None, gateway6: None },
        Arc::default(),
    );
    let poll = Polling {
        rx_batch: 64,
        idle_spin: Duration::ZERO,
        idle_sleep: Duration::ZERO,
        wake_cost: None,
        busy_poll_below: Duration::ZERO,
    };
    let mut t = StackTransport::new(server_io, net, poll, TcpConfig::default(), Some(PORT), 7);
    let mut c = Client {
        io: client_io,
        port: 40000,
        seq: 1000,
        ack: 0,
        ts_recent: 0,
        responses: 0,
        carry: Vec::new(),
        pure_acks: 0,
    };

    // ARP, then the handshake.
    c.arp_request();
    server_step(&mut t, &mut d);
    c.drain();
    c.frame(TcpControl::Syn, &[]);
    for _ in 0..100 {
        server_step(&mut t, &mut d);
        c.drain();
        if c.ack != 0 {
            break;
        }
    }
    assert_ne!(c.ack, 0, "no SYN-ACK");
    c.frame(TcpControl::None, &[]);
    server_step(&mut t, &mut d);
    c.drain();
    let acks0 = c.pure_acks;
    let before = t.report().stack.unwrap_or_default();

    let start = Instant::now();
    let mut steps = 0u64;
    let rounds = requests.div_ceil(depth);
    for _ in 0..rounds {
        let want = c.responses + depth;
        c.frame(TcpControl::Psh, batch.as_bytes());
        let mut spins = 0;
        while c.responses < want {
            steps += 1;
            server_step(&mut t, &mut d);
            c.drain();
            spins += 1;
            assert!(spins < 10_000, "the server stopped answering after {} responses", c.responses);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = t.report().stack.unwrap_or_default();
    let n = (rounds * depth) as f64;
    let per = |v: u64| v as f64 / n;
    println!(
        "{{\"workload\":\"{workload}\",\"requests\":{n},\"server_frames_in_per_req\":{:.4},\"server_frames_out_per_req\":{:.4},\
         \"client_pure_acks_per_req\":{:.4},\"steps_per_req\":{:.4},\"busy_turns_per_req\":{:.4},\
         \"ns_per_req\":{:.0}}}",
        per(after.io.rx_packets - before.io.rx_packets),
        per(after.io.tx_packets - before.io.tx_packets),
        per(c.pure_acks - acks0),
        per(steps),
        per(after.turns.busy_turns - before.turns.busy_turns),
        secs * 1e9 / n,
    );
    plane.shutdown();
}
