//! A harness that feeds arbitrary frames through the receive path (Ethernet → IPv4 →
//! TCP engine with an echoing application) as the AF_XDP loop does. The cargo-fuzz
//! target in fuzz/ drives it with libFuzzer; a seeded property test drives it in every
//! test run. Contract: no input panics, and state stays bounded.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{TcpPacket, TcpRepr};

use crate::net::{FrameBatch, NetConfig, NetStack};
use crate::tcp::{ConnId, Engine, Segment, TcpApp, TcpConfig};

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

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.engine.connections()
    }

    /// Frames that reached the TCP engine.
    pub fn tcp_segments(&self) -> u64 {
        self.net.counters().tcp_segments
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

    #[test]
    fn arbitrary_frames_through_the_tcp_path() {
        let mut h = FrameHarness::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
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
}
