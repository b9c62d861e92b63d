//! The network layer below TCP, sans-I/O: Ethernet demux, ARP (answer, learn, resolve),
//! IPv4 checks and ICMP echo, on `smoltcp::wire` packet views.
//!
//! [`NetStack::on_frame`] takes one received frame and the current time and appends any
//! frames to send to a [`TxSink`]; [`NetStack::poll`] retries ARP resolution and
//! expires what waited too long. Checksums are verified on receive; every frame that is
//! not answered is counted under its cause in [`NetCounters`].
//!
//! Panic contract: arbitrary bytes never panic (`new_checked` everywhere).

mod neighbor;
pub mod rss;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
};

pub use crate::nic::{FrameBatch, TxSink};

/// A checksum-verified TCP segment for our address, located inside its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpIn {
    /// Sender.
    pub src: Ipv4Addr,
    /// Us.
    pub dst: Ipv4Addr,
    /// Offset of the TCP header in the frame.
    pub start: usize,
    /// TCP header plus payload length.
    pub len: usize,
}
pub use neighbor::{NeighborCache, SharedNeighbors};

/// Our addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// Our MAC.
    pub mac: [u8; 6],
    /// Our IPv4 address.
    pub ip: Ipv4Addr,
    /// Prefix length of our subnet.
    pub prefix_len: u8,
    /// Next hop for other destinations.
    pub gateway: Option<Ipv4Addr>,
}

impl NetConfig {
    /// Parses `ADDR/PREFIX`.
    pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
        let (a, p) = text.split_once('/').ok_or_else(|| format!("{text:?} is not ADDR/PREFIX (e.g. 10.99.0.1/24)"))?;
        let ip: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|&p| (1..=32).contains(&p)).ok_or_else(|| format!("prefix {p:?} is not 1..=32"))?;
        Ok((ip, prefix))
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        u32::from(ip) & mask == u32::from(self.ip) & mask
    }
}

/// Why frames were not answered, and what was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames seen.
    pub rx_frames: u64,
    /// Frames for another MAC.
    pub drop_not_for_us: u64,
    /// Frames too short or with inconsistent lengths, per layer.
    pub drop_malformed: u64,
    /// IPv4 header or ICMP checksum wrong.
    pub drop_bad_checksum: u64,
    /// EtherTypes and IP protocols we do not handle (yet).
    pub drop_unsupported: u64,
    /// IPv4 for another address.
    pub drop_not_our_ip: u64,
    /// IPv4 fragments (not reassembled).
    pub drop_fragment: u64,
    /// No route (off-link destination, no gateway).
    pub drop_no_route: u64,
    /// Packets waiting for ARP dropped (queue full or resolution timed out).
    pub drop_arp_unresolved: u64,
    /// ARP requests for our address answered.
    pub arp_replies_sent: u64,
    /// ARP requests we sent.
    pub arp_requests_sent: u64,
    /// Neighbours learned or refreshed.
    pub arp_learned: u64,
    /// ICMP echo requests answered.
    pub icmp_echo_replies: u64,
    /// TCP segments with a valid checksum handed to the TCP engine.
    pub tcp_segments: u64,
}

/// How long a packet may wait for ARP, and how many may wait.
const PENDING_TIMEOUT: Duration = Duration::from_secs(3);
const PENDING_MAX: usize = 64;
const ARP_RETRY: Duration = Duration::from_secs(1);

struct Pending {
    next_hop: Ipv4Addr,
    since: Instant,
    last_request: Instant,
    /// The IPv4 packet (no Ethernet header).
    packet: Vec<u8>,
}

/// One core's network layer.
pub struct NetStack {
    cfg: NetConfig,
    mac: EthernetAddress,
    neighbors: NeighborCache,
    pending: Vec<Pending>,
    counters: NetCounters,
    caps: ChecksumCapabilities,
    scratch: Vec<u8>,
}

impl NetStack {
    /// A stack with our addresses and the neighbour table shared by all cores.
    pub fn new(cfg: NetConfig, shared: Arc<SharedNeighbors>) -> NetStack {
        NetStack {
            mac: EthernetAddress(cfg.mac),
            cfg,
            neighbors: NeighborCache::new(shared),
            pending: Vec::new(),
            counters: NetCounters::default(),
            caps: ChecksumCapabilities::default(),
            scratch: Vec::new(),
        }
    }

    /// Our IPv4 address.
    pub fn ip(&self) -> Ipv4Addr {
        self.cfg.ip
    }

    /// Counters so far.
    pub fn counters(&self) -> NetCounters {
        self.counters
    }

    /// Handles one received frame; replies go to `out`. A TCP segment for us with a
    /// valid checksum is not handled here but returned, for the TCP engine.
    pub fn on_frame(&mut self, frame: &[u8], now: Instant, out: &mut dyn TxSink) -> Option<TcpIn> {
        self.counters.rx_frames += 1;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.counters.drop_malformed += 1;
            return None;
        };
        let dst = eth.dst_addr();
        if dst != self.mac && !dst.is_broadcast() {
            self.counters.drop_not_for_us += 1;
            return None;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => self.on_arp(eth.payload(), now, out),
            EthernetProtocol::Ipv4 => return self.on_ipv4(eth.src_addr(), eth.payload(), now, out),
            _ => self.counters.drop_unsupported += 1,
        }
        None
    }

    fn on_arp(&mut self, payload: &[u8], now: Instant, out: &mut dyn TxSink) {
        let repr = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p));
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = repr
        else {
            self.counters.drop_malformed += 1;
            return;
        };
        let our_ip = self.cfg.ip;
        let for_us = target_protocol_addr == our_ip;
        let sender: Ipv4Addr = source_protocol_addr;
        // RFC 826: update an existing entry from any ARP; add one when it is for us.
        if (for_us || self.neighbors.knows(sender)) && source_hardware_addr.is_unicast() {
            self.neighbors.learn(sender, source_hardware_addr.0, now);
            self.counters.arp_learned += 1;
            self.flush_pending(sender, now, out);
        }
        if for_us && operation == ArpOperation::Request {
            let reply = ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.mac,
                source_protocol_addr: our_ip,
                target_hardware_addr: source_hardware_addr,
                target_protocol_addr: source_protocol_addr,
            };
            self.emit_arp(reply, source_hardware_addr, out);
            self.counters.arp_replies_sent += 1;
        }
    }

    fn emit_arp(&mut self, repr: ArpRepr, to: EthernetAddress, out: &mut dyn TxSink) {
        let eth = EthernetRepr { src_addr: self.mac, dst_addr: to, ethertype: EthernetProtocol::Arp };
        out.push_frame(eth.buffer_len() + repr.buffer_len(), &mut |buf| {
            let mut frame = EthernetFrame::new_unchecked(&mut *buf);
            eth.emit(&mut frame);
            repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        });
    }

    fn on_ipv4(
        &mut self,
        _src_mac: EthernetAddress,
        payload: &[u8],
        now: Instant,
        out: &mut dyn TxSink,
    ) -> Option<TcpIn> {
        let Ok(ip) = Ipv4Packet::new_checked(payload) else {
            self.counters.drop_malformed += 1;
            return None;
        };
        if !ip.verify_checksum() {
            self.counters.drop_bad_checksum += 1;
            return None;
        }
        if ip.dst_addr() != self.cfg.ip {
            self.counters.drop_not_our_ip += 1;
            return None;
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            self.counters.drop_fragment += 1;
            return None;
        }
        let Ok(repr) = Ipv4Repr::parse(&ip, &self.caps) else {
            self.counters.drop_malformed += 1;
            return None;
        };
        match repr.next_header {
            IpProtocol::Icmp => self.on_icmp(&repr, ip.payload(), now, out),
            IpProtocol::Tcp => return self.on_tcp(&repr, &ip),
            _ => self.counters.drop_unsupported += 1,
        }
        None
    }

    fn on_tcp(&mut self, ip: &Ipv4Repr, packet: &Ipv4Packet<&[u8]>) -> Option<TcpIn> {
        let header = usize::from(packet.header_len());
        let payload = packet.payload();
        let Ok(tcp) = TcpPacket::new_checked(payload) else {
            self.counters.drop_malformed += 1;
            return None;
        };
        if !tcp.verify_checksum(&ip.src_addr.into(), &ip.dst_addr.into()) {
            self.counters.drop_bad_checksum += 1;
            return None;
        }
        self.counters.tcp_segments += 1;
        Some(TcpIn { src: ip.src_addr, dst: ip.dst_addr, start: 14 + header, len: payload.len() })
    }

    /// Sends an IPv4 packet of `len` bytes written in place by `fill` (no intermediate
    /// copy when the next hop is known; parked like any packet while ARP runs).
    pub fn send_ipv4_with(
        &mut self,
        dst: Ipv4Addr,
        len: usize,
        now: Instant,
        out: &mut dyn TxSink,
        fill: impl FnOnce(&mut [u8]),
    ) {
        let next_hop = if self.cfg.on_link(dst) { Some(dst) } else { self.cfg.gateway };
        if let Some(mac) = next_hop.and_then(|h| self.neighbors.lookup(h, now)) {
            let eth =
                EthernetRepr { src_addr: self.mac, dst_addr: EthernetAddress(mac), ethertype: EthernetProtocol::Ipv4 };
            let mut fill = Some(fill);
            out.push_frame(eth.buffer_len() + len, &mut |buf| {
                eth.emit(&mut EthernetFrame::new_unchecked(&mut *buf));
                if let Some(fill) = fill.take() {
                    fill(&mut buf[eth.buffer_len()..]);
                }
            });
            return;
        }
        let mut packet = vec![0; len];
        fill(&mut packet);
        self.send_ipv4(dst, &packet, now, out);
    }

    fn on_icmp(&mut self, ip: &Ipv4Repr, payload: &[u8], now: Instant, out: &mut dyn TxSink) {
        let Ok(pkt) = Icmpv4Packet::new_checked(payload) else {
            self.counters.drop_malformed += 1;
            return;
        };
        if !pkt.verify_checksum() {
            self.counters.drop_bad_checksum += 1;
            return;
        }
        match Icmpv4Repr::parse(&pkt, &self.caps) {
            Ok(Icmpv4Repr::EchoRequest { ident, seq_no, data }) => {
                let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
                let ip_out = Ipv4Repr {
                    src_addr: self.cfg.ip,
                    dst_addr: ip.src_addr,
                    next_header: IpProtocol::Icmp,
                    payload_len: reply.buffer_len(),
                    hop_limit: 64,
                };
                let mut packet = std::mem::take(&mut self.scratch);
                packet.clear();
                packet.resize(ip_out.buffer_len() + reply.buffer_len(), 0);
                let mut ipp = Ipv4Packet::new_unchecked(&mut packet[..]);
                ip_out.emit(&mut ipp, &self.caps);
                reply.emit(&mut Icmpv4Packet::new_unchecked(ipp.payload_mut()), &self.caps);
                self.counters.icmp_echo_replies += 1;
                self.send_ipv4(ip.src_addr, &packet, now, out);
                self.scratch = packet;
            }
            Ok(_) => self.counters.drop_unsupported += 1,
            Err(_) => self.counters.drop_malformed += 1,
        }
    }

    /// Sends an IPv4 packet to `dst`, resolving the next hop first (the packet waits,
    /// bounded, while ARP runs).
    pub fn send_ipv4(&mut self, dst: Ipv4Addr, packet: &[u8], now: Instant, out: &mut dyn TxSink) {
        let next_hop = if self.cfg.on_link(dst) {
            dst
        } else if let Some(gw) = self.cfg.gateway {
            gw
        } else {
            self.counters.drop_no_route += 1;
            return;
        };
        match self.neighbors.lookup(next_hop, now) {
            Some(mac) => self.emit_ipv4(EthernetAddress(mac), packet, out),
            None => {
                if self.pending.len() >= PENDING_MAX {
                    self.counters.drop_arp_unresolved += 1;
                    return;
                }
                let first = !self.pending.iter().any(|p| p.next_hop == next_hop);
                self.pending.push(Pending { next_hop, since: now, last_request: now, packet: packet.to_vec() });
                if first {
                    self.request(next_hop, out);
                }
            }
        }
    }

    fn emit_ipv4(&self, to: EthernetAddress, packet: &[u8], out: &mut dyn TxSink) {
        let eth = EthernetRepr { src_addr: self.mac, dst_addr: to, ethertype: EthernetProtocol::Ipv4 };
        out.push_frame(eth.buffer_len() + packet.len(), &mut |buf| {
            let mut frame = EthernetFrame::new_unchecked(&mut *buf);
            eth.emit(&mut frame);
            frame.payload_mut().copy_from_slice(packet);
        });
    }

    fn request(&mut self, ip: Ipv4Addr, out: &mut dyn TxSink) {
        let req = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: self.mac,
            source_protocol_addr: self.cfg.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        self.emit_arp(req, EthernetAddress::BROADCAST, out);
        self.counters.arp_requests_sent += 1;
    }

    fn flush_pending(&mut self, ip: Ipv4Addr, now: Instant, out: &mut dyn TxSink) {
        let Some(mac) = self.neighbors.lookup(ip, now) else { return };
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].next_hop == ip {
                let p = self.pending.swap_remove(i);
                self.emit_ipv4(EthernetAddress(mac), &p.packet, out);
            } else {
                i += 1;
            }
        }
    }

    /// Timers: sends waiting packets whose neighbour another core learned, re-asks ARP
    /// once a second, drops what waited too long. Costs nothing when nothing waits.
    pub fn poll(&mut self, now: Instant, out: &mut dyn TxSink) {
        if self.pending.is_empty() {
            return;
        }
        let mut hops: Vec<Ipv4Addr> = self.pending.iter().map(|p| p.next_hop).collect();
        hops.dedup();
        for hop in hops {
            self.flush_pending(hop, now, out);
        }
        let before = self.pending.len();
        self.pending.retain(|p| now.duration_since(p.since) < PENDING_TIMEOUT);
        self.counters.drop_arp_unresolved += (before - self.pending.len()) as u64;
        let mut asked: Vec<Ipv4Addr> = Vec::new();
        for i in 0..self.pending.len() {
            let p = &self.pending[i];
            if now.duration_since(p.last_request) >= ARP_RETRY && !asked.contains(&p.next_hop) {
                asked.push(p.next_hop);
            }
        }
        for hop in asked {
            self.request(hop, out);
            for p in self.pending.iter_mut().filter(|p| p.next_hop == hop) {
                p.last_request = now;
            }
        }
    }

    /// Packets waiting for ARP.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests;
