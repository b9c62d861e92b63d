//! The network layer below TCP, sans-I/O: Ethernet demux, ARP (answer, learn, resolve),
//! IPv4 checks and ICMP echo; and, when an IPv6 address is configured, IPv6 with its
//! extension headers walked (skipped or refused), Neighbor Discovery (RFC 4861: answer
//! solicitations for our addresses, solicit next hops, learn from advertisements) and
//! ICMPv6 echo; on `smoltcp::wire` packet views.
//!
//! [`NetStack::on_frame`] takes one received frame and the current time and appends any
//! frames to send to a [`TxSink`]; [`NetStack::poll`] retries ARP resolution and
//! expires what waited too long. Checksums are verified on receive; every frame that is
//! not answered is counted under its cause in [`NetCounters`].
//!
//! Panic contract: arbitrary bytes never panic (`new_checked` everywhere).

pub mod checksum;
mod neighbor;
pub mod rss;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags,
    NdiscRepr, RawHardwareAddress, TcpPacket,
};

pub use crate::nic::{FrameBatch, PartialChecksum, TxSink};

/// A checksum-verified TCP segment for our address, located inside its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpIn {
    /// Sender.
    pub src: IpAddr,
    /// Us.
    pub dst: IpAddr,
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
    /// Our IPv6 address and prefix length, if we speak IPv6.
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// IPv6 next hop for off-link destinations.
    pub gateway6: Option<Ipv6Addr>,
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

    /// Parses `ADDR/PREFIX` for IPv6.
    pub fn parse_cidr6(text: &str) -> Result<(Ipv6Addr, u8), String> {
        let (a, p) = text.split_once('/').ok_or_else(|| format!("{text:?} is not ADDR/PREFIX (e.g. fd99::1/64)"))?;
        let ip: Ipv6Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv6 address"))?;
        if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
            return Err(format!("{ip} is not a unicast address"));
        }
        let prefix: u8 =
            p.parse().ok().filter(|&p| (1..=128).contains(&p)).ok_or_else(|| format!("prefix {p:?} is not 1..=128"))?;
        Ok((ip, prefix))
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        u32::from(ip) & mask == u32::from(self.ip) & mask
    }

    fn on_link6(&self, ip: Ipv6Addr) -> bool {
        if is_link_local(ip) {
            return true;
        }
        let Some((ours, prefix)) = self.ip6 else { return false };
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        u128::from(ip) & mask == u128::from(ours) & mask
    }

    /// Our link-local address: fe80::/64 with the modified EUI-64 of our MAC (RFC 4291
    /// appendix A).
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.mac;
        let mut o = [0u8; 16];
        o[0] = 0xfe;
        o[1] = 0x80;
        o[8..].copy_from_slice(&[m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
        Ipv6Addr::from(o)
    }
}

fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node multicast group of `ip` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// The Ethernet address of an IPv6 multicast group (RFC 2464 §7).
fn multicast_mac(ip: Ipv6Addr) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Extension headers walked before giving up on a packet.
const MAX_EXT_HEADERS: usize = 8;
/// ICMPv6 errors a core sends per second at most.
pub const ICMP6_ERRORS_PER_SEC: u32 = 100;

crate::counters! {
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
        /// ICMPv6 echo requests answered.
        pub icmp6_echo_replies: u64,
        /// Neighbor advertisements sent (answers to solicitations for our addresses).
        pub nd_adverts_sent: u64,
        /// Neighbor solicitations we sent (resolving a next hop).
        pub nd_solicits_sent: u64,
        /// IPv6 neighbours learned or refreshed.
        pub nd_learned: u64,
        /// IPv6 packets refused for their extension headers (a routing header still to be
        /// processed, too many headers, an unknown one).
        pub drop_ext_header: u64,
        /// ICMPv6 errors sent (parameter problem for a next header we do not know; at most
        /// [`ICMP6_ERRORS_PER_SEC`] a second, RFC 4443 §2.4 (f)).
        pub icmp6_errors_sent: u64,
        /// TCP segments with a valid checksum handed to the TCP engine.
        pub tcp_segments: u64,
    }
}

/// How long a packet may wait for ARP, and how many may wait.
const PENDING_TIMEOUT: Duration = Duration::from_secs(3);
const PENDING_MAX: usize = 64;

struct Pending {
    next_hop: IpAddr,
    since: Instant,
    last_request: Instant,
    /// The IP packet (no Ethernet header).
    packet: Vec<u8>,
}

/// The (local, remote) endpoints of a TCP segment in an Ethernet frame, read at fixed
/// offsets without any checking beyond bounds: a hint for prefetching the connection
/// before the frame is handled (which checks everything). IPv4 with options and IPv6
/// without extension headers; anything else is `None`.
pub fn peek_tcp_flow(frame: &[u8]) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let ip = frame.get(14..)?;
    let (src, dst, tcp): (IpAddr, IpAddr, &[u8]) = match frame.get(12..14)? {
        [0x08, 0x00] if ip.first()? >> 4 == 4 && *ip.get(9)? == 6 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let a: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let b: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into(), ip.get(ihl..)?)
        }
        [0x86, 0xdd] if *ip.get(6)? == 6 => {
            let a: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into(), ip.get(40..)?)
        }
        _ => return None,
    };
    let port = |i: usize| Some(u16::from_be_bytes([*tcp.get(i)?, *tcp.get(i + 1)?]));
    Some((std::net::SocketAddr::new(dst, port(2)?), std::net::SocketAddr::new(src, port(0)?)))
}

fn ethertype_of(ip: IpAddr) -> EthernetProtocol {
    match ip {
        IpAddr::V4(_) => EthernetProtocol::Ipv4,
        IpAddr::V6(_) => EthernetProtocol::Ipv6,
    }
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
    /// ICMPv6 errors sent in the current second, and when it began.
    icmp6_budget: (u32, Option<Instant>),
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
            icmp6_budget: (0, None),
        }
    }

    /// Our IPv4 address.
    pub fn ip(&self) -> Ipv4Addr {
        self.cfg.ip
    }

    /// Our IPv6 address, if configured.
    pub fn ip6(&self) -> Option<Ipv6Addr> {
        self.cfg.ip6.map(|(a, _)| a)
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
        // IPv6 multicast (33:33:…) is for us when IPv6 is on; the IPv6 destination
        // check below then keeps only our groups.
        let v6_multicast = self.cfg.ip6.is_some() && dst.0[0] == 0x33 && dst.0[1] == 0x33;
        if dst != self.mac && !dst.is_broadcast() && !v6_multicast {
            self.counters.drop_not_for_us += 1;
            return None;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => self.on_arp(eth.payload(), now, out),
            EthernetProtocol::Ipv4 => return self.on_ipv4(eth.src_addr(), eth.payload(), now, out),
            EthernetProtocol::Ipv6 if self.cfg.ip6.is_some() => {
                return self.on_ipv6(eth.src_addr(), eth.payload(), now, out)
            }
            _ => self.counters.drop_unsupported += 1,
        }
        None
    }

    /// Whether an IPv6 destination is ours: our address, our link-local address, the
    /// all-nodes group, or the solicited-node group of either address.
    fn is_our_v6(&self, dst: Ipv6Addr) -> bool {
        let Some((ours, _)) = self.cfg.ip6 else { return false };
        let ll = self.cfg.link_local();
        dst == ours
            || dst == ll
            || dst == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
            || dst == solicited_node(ours)
            || dst == solicited_node(ll)
    }

    fn on_ipv6(
        &mut self,
        src_mac: EthernetAddress,
        payload: &[u8],
        now: Instant,
        out: &mut dyn TxSink,
    ) -> Option<TcpIn> {
        let Ok(ip) = Ipv6Packet::new_checked(payload) else {
            self.counters.drop_malformed += 1;
            return None;
        };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if !self.is_our_v6(dst) {
            self.counters.drop_not_our_ip += 1;
            return None;
        }
        // A multicast source is invalid, and IPv4-mapped addresses do not belong in
        // IPv6 packets (RFC 4291 §2.5.5.2): the TCP engine keys IPv4 that way.
        if src.is_multicast() || src.to_ipv4_mapped().is_some() {
            self.counters.drop_malformed += 1;
            return None;
        }
        // Walk the extension headers (RFC 8200 §4): hop-by-hop and destination options
        // are skipped; a routing header with segments left, a fragment, or a chain too
        // long is refused.
        let body = ip.payload();
        let mut next = ip.next_header();
        let mut off = 0usize;
        // Where the Next Header field naming `next` sits in the packet (for errors).
        let mut nh_field = 6usize;
        for _ in 0..=MAX_EXT_HEADERS {
            match next {
                IpProtocol::HopByHop | IpProtocol::Ipv6Opts | IpProtocol::Ipv6Route => {
                    let Some(h) = body.get(off..off + 8) else {
                        self.counters.drop_malformed += 1;
                        return None;
                    };
                    if next == IpProtocol::Ipv6Route && h[3] != 0 {
                        self.counters.drop_ext_header += 1;
                        return None;
                    }
                    next = IpProtocol::from(h[0]);
                    nh_field = 40 + off;
                    off += 8 + 8 * usize::from(h[1]);
                }
                IpProtocol::Ipv6Frag => {
                    self.counters.drop_fragment += 1;
                    return None;
                }
                _ => break,
            }
        }
        if off > body.len() {
            self.counters.drop_malformed += 1;
            return None;
        }
        if matches!(next, IpProtocol::HopByHop | IpProtocol::Ipv6Opts | IpProtocol::Ipv6Route) {
            self.counters.drop_ext_header += 1;
            return None;
        }
        let upper = &body[off..];
        let hop_limit = ip.hop_limit();
        if !matches!(next, IpProtocol::Icmpv6 | IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Ipv6NoNxt) {
            // RFC 8200 §4: an unrecognised next header earns a parameter problem (code 1)
            // pointing at the field, unless the packet went to a group.
            let pointer = nh_field as u32;
            if !dst.is_multicast() && self.icmp6_allowed(now) {
                let err = Icmpv6Repr::ParamProblem {
                    reason: smoltcp::wire::Icmpv6ParamProblem::UnrecognizedNxtHdr,
                    pointer,
                    header: Ipv6Repr {
                        src_addr: src,
                        dst_addr: dst,
                        next_header: ip.next_header(),
                        payload_len: body.len(),
                        hop_limit,
                    },
                    data: &body[..body.len().min(1232 - 48)],
                };
                self.counters.icmp6_errors_sent += 1;
                self.send_icmpv6(dst, src, 64, &err, now, out);
            }
            self.counters.drop_unsupported += 1;
            return None;
        }
        match next {
            IpProtocol::Icmpv6 => self.on_icmpv6(src_mac, src, dst, hop_limit, upper, now, out),
            IpProtocol::Tcp if !dst.is_multicast() => {
                let Ok(tcp) = TcpPacket::new_checked(upper) else {
                    self.counters.drop_malformed += 1;
                    return None;
                };
                if !tcp.verify_checksum(&src.into(), &dst.into()) {
                    self.counters.drop_bad_checksum += 1;
                    return None;
                }
                self.counters.tcp_segments += 1;
                return Some(TcpIn { src: src.into(), dst: dst.into(), start: 14 + 40 + off, len: upper.len() });
            }
            _ => self.counters.drop_unsupported += 1,
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn on_icmpv6(
        &mut self,
        src_mac: EthernetAddress,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        payload: &[u8],
        now: Instant,
        out: &mut dyn TxSink,
    ) {
        let Ok(pkt) = Icmpv6Packet::new_checked(payload) else {
            self.counters.drop_malformed += 1;
            return;
        };
        if !pkt.verify_checksum(&src, &dst) {
            self.counters.drop_bad_checksum += 1;
            return;
        }
        let Ok(repr) = Icmpv6Repr::parse(&src, &dst, &pkt, &self.caps) else {
            self.counters.drop_malformed += 1;
            return;
        };
        let ours = self.cfg.ip6.map(|(a, _)| a).expect("IPv6 is on");
        match repr {
            Icmpv6Repr::EchoRequest { ident, seq_no, data } if !dst.is_multicast() => {
                let reply = Icmpv6Repr::EchoReply { ident, seq_no, data };
                self.counters.icmp6_echo_replies += 1;
                self.send_icmpv6(dst, src, 64, &reply, now, out);
            }
            // RFC 4861 §7.1: neighbour discovery comes with hop limit 255 (never routed).
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit { target_addr, lladdr }) if hop_limit == 255 => {
                let ll = self.cfg.link_local();
                if target_addr != ours && target_addr != ll {
                    return;
                }
                let mac = lladdr.and_then(|l| (l.as_bytes().len() == 6).then(|| l.as_bytes().to_vec()));
                if !src.is_unspecified() {
                    if let Some(m) = mac.as_deref() {
                        let m: [u8; 6] = m.try_into().expect("6 bytes");
                        self.neighbors.learn(IpAddr::V6(src), m, now);
                        self.counters.nd_learned += 1;
                        self.flush_pending(IpAddr::V6(src), now, out);
                    }
                }
                // §7.2.4: solicited advertisement to the sender (all-nodes for DAD).
                let to = if src.is_unspecified() { Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1) } else { src };
                let mut flags = NdiscNeighborFlags::OVERRIDE;
                if !src.is_unspecified() {
                    flags |= NdiscNeighborFlags::SOLICITED;
                }
                let adv = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                    flags,
                    target_addr,
                    lladdr: Some(RawHardwareAddress::from(self.mac)),
                });
                self.counters.nd_adverts_sent += 1;
                let mac = mac.map(|m| EthernetAddress(m.try_into().expect("6 bytes"))).unwrap_or(src_mac);
                let dst_mac = if to.is_multicast() { multicast_mac(to) } else { mac };
                self.emit_icmpv6(target_addr, to, dst_mac, &adv, out);
            }
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { flags, target_addr, lladdr }) if hop_limit == 255 => {
                let ip = IpAddr::V6(target_addr);
                // RFC 4861 §7.2.5: update what we asked about or already have. A
                // solicited advertisement to our own address answers a solicitation of
                // ours, though perhaps another core's (the reply comes in on whichever
                // queue the peer's kernel picks), so it is learned too.
                let mac = lladdr.filter(|l| l.as_bytes().len() == 6).map(|l| l.as_bytes().to_vec());
                let answer = flags.contains(NdiscNeighborFlags::SOLICITED) && dst == ours;
                let wanted = answer || self.pending.iter().any(|p| p.next_hop == ip) || self.neighbors.knows(ip);
                match (mac, wanted) {
                    (Some(m), true) => {
                        self.neighbors.learn(ip, m.try_into().expect("6 bytes"), now);
                        self.counters.nd_learned += 1;
                        self.flush_pending(ip, now, out);
                    }
                    _ => self.counters.drop_unsupported += 1,
                }
            }
            _ => self.counters.drop_unsupported += 1,
        }
    }

    /// One more ICMPv6 error this second?
    fn icmp6_allowed(&mut self, now: Instant) -> bool {
        let (sent, since) = &mut self.icmp6_budget;
        if since.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) {
            *since = Some(now);
            *sent = 0;
        }
        *sent += 1;
        *sent <= ICMP6_ERRORS_PER_SEC
    }

    /// Sends an ICMPv6 message from `src` to `dst` through the neighbour table.
    fn send_icmpv6(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        repr: &Icmpv6Repr<'_>,
        now: Instant,
        out: &mut dyn TxSink,
    ) {
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: repr.buffer_len(),
            hop_limit,
        };
        let mut packet = std::mem::take(&mut self.scratch);
        packet.clear();
        packet.resize(ip.buffer_len() + repr.buffer_len(), 0);
        let mut p = Ipv6Packet::new_unchecked(&mut packet[..]);
        ip.emit(&mut p);
        repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(p.payload_mut()), &self.caps);
        self.send_ip(IpAddr::V6(dst), &packet, now, out);
        self.scratch = packet;
    }

    /// Emits an ICMPv6 message straight to `to_mac` (neighbour discovery: no lookup).
    fn emit_icmpv6(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        to_mac: EthernetAddress,
        repr: &Icmpv6Repr<'_>,
        out: &mut dyn TxSink,
    ) {
        let ip = Ipv6Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: repr.buffer_len(),
            hop_limit: 255,
        };
        let eth = EthernetRepr { src_addr: self.mac, dst_addr: to_mac, ethertype: EthernetProtocol::Ipv6 };
        let caps = self.caps.clone();
        out.push_frame(eth.buffer_len() + ip.buffer_len() + repr.buffer_len(), &mut |buf| {
            let mut frame = EthernetFrame::new_unchecked(&mut *buf);
            eth.emit(&mut frame);
            let mut p = Ipv6Packet::new_unchecked(frame.payload_mut());
            ip.emit(&mut p);
            repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(p.payload_mut()), &caps);
        });
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
        if (for_us || self.neighbors.knows(sender.into())) && source_hardware_addr.is_unicast() {
            self.neighbors.learn(sender.into(), source_hardware_addr.0, now);
            self.counters.arp_learned += 1;
            self.flush_pending(sender.into(), now, out);
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
        Some(TcpIn { src: ip.src_addr.into(), dst: ip.dst_addr.into(), start: 14 + header, len: payload.len() })
    }

    /// The next hop towards `dst`, if there is a route.
    fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        match dst {
            IpAddr::V4(d) if self.cfg.on_link(d) => Some(dst),
            IpAddr::V4(_) => self.cfg.gateway.map(IpAddr::V4),
            IpAddr::V6(d) if self.cfg.on_link6(d) => Some(dst),
            IpAddr::V6(_) => self.cfg.gateway6.map(IpAddr::V6),
        }
    }

    /// Sends an IP packet (v4 or v6, as `dst` is) of `len` bytes written in place by
    /// `fill` (no intermediate copy when the next hop is known; parked like any packet
    /// while ARP or neighbour discovery runs). With `csum`, `fill` left the L4 checksum
    /// partial (offsets from the IP header's start): the sink's transmit path or this
    /// function finishes it.
    pub fn send_ip_with(
        &mut self,
        dst: IpAddr,
        len: usize,
        now: Instant,
        out: &mut dyn TxSink,
        csum: Option<PartialChecksum>,
        fill: impl FnOnce(&mut [u8]),
    ) {
        let hop = self.next_hop(dst);
        if let Some((mac, refresh)) = hop.and_then(|h| self.neighbors.lookup(h, now)) {
            if refresh {
                self.request(hop.expect("looked up"), out);
            }
            let eth = EthernetRepr { src_addr: self.mac, dst_addr: EthernetAddress(mac), ethertype: ethertype_of(dst) };
            let mut fill = Some(fill);
            let mut frame = |buf: &mut [u8]| {
                eth.emit(&mut EthernetFrame::new_unchecked(&mut *buf));
                if let Some(fill) = fill.take() {
                    fill(&mut buf[eth.buffer_len()..]);
                }
            };
            match csum {
                Some(c) => {
                    let c = PartialChecksum { start: c.start + eth.buffer_len() as u16, offset: c.offset };
                    out.push_frame_partial(eth.buffer_len() + len, c, &mut frame);
                }
                None => out.push_frame(eth.buffer_len() + len, &mut frame),
            }
            return;
        }
        let mut packet = vec![0; len];
        fill(&mut packet);
        if let Some(c) = csum {
            c.finish(&mut packet);
        }
        self.send_ip(dst, &packet, now, out);
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
                self.send_ip(ip.src_addr.into(), &packet, now, out);
                self.scratch = packet;
            }
            Ok(_) => self.counters.drop_unsupported += 1,
            Err(_) => self.counters.drop_malformed += 1,
        }
    }

    /// Sends an IP packet to `dst`, resolving the next hop first (the packet waits,
    /// bounded, while ARP or neighbour discovery runs).
    pub fn send_ip(&mut self, dst: IpAddr, packet: &[u8], now: Instant, out: &mut dyn TxSink) {
        let Some(next_hop) = self.next_hop(dst) else {
            self.counters.drop_no_route += 1;
            return;
        };
        match self.neighbors.lookup(next_hop, now) {
            Some((mac, refresh)) => {
                if refresh {
                    self.request(next_hop, out);
                }
                self.emit_ip(EthernetAddress(mac), ethertype_of(dst), packet, out)
            }
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

    fn emit_ip(&self, to: EthernetAddress, ethertype: EthernetProtocol, packet: &[u8], out: &mut dyn TxSink) {
        let eth = EthernetRepr { src_addr: self.mac, dst_addr: to, ethertype };
        out.push_frame(eth.buffer_len() + packet.len(), &mut |buf| {
            let mut frame = EthernetFrame::new_unchecked(&mut *buf);
            eth.emit(&mut frame);
            frame.payload_mut().copy_from_slice(packet);
        });
    }

    /// Asks who has `ip`: ARP for IPv4, a neighbour solicitation to its solicited-node
    /// group for IPv6 (RFC 4861 §7.2.2).
    fn request(&mut self, ip: IpAddr, out: &mut dyn TxSink) {
        match ip {
            IpAddr::V4(ip) => {
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
            IpAddr::V6(target) => {
                let Some((ours, _)) = self.cfg.ip6 else { return };
                let src = if is_link_local(target) { self.cfg.link_local() } else { ours };
                let group = solicited_node(target);
                let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                    target_addr: target,
                    lladdr: Some(RawHardwareAddress::from(self.mac)),
                });
                self.emit_icmpv6(src, group, multicast_mac(group), &ns, out);
                self.counters.nd_solicits_sent += 1;
            }
        }
    }

    fn flush_pending(&mut self, ip: IpAddr, now: Instant, out: &mut dyn TxSink) {
        let Some((mac, _)) = self.neighbors.lookup(ip, now) else { return };
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].next_hop == ip {
                let p = self.pending.swap_remove(i);
                self.emit_ip(EthernetAddress(mac), ethertype_of(ip), &p.packet, out);
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
        let mut hops: Vec<IpAddr> = self.pending.iter().map(|p| p.next_hop).collect();
        hops.dedup();
        for hop in hops {
            self.flush_pending(hop, now, out);
        }
        let before = self.pending.len();
        self.pending.retain(|p| now.duration_since(p.since) < PENDING_TIMEOUT);
        self.counters.drop_arp_unresolved += (before - self.pending.len()) as u64;
        let mut asked: Vec<IpAddr> = Vec::new();
        for i in 0..self.pending.len() {
            let p = &self.pending[i];
            if now.duration_since(p.last_request) >= neighbor::ASK_AGAIN && !asked.contains(&p.next_hop) {
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
