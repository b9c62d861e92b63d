//! NetStack tests: frames built with smoltcp::wire as a Linux peer would send them.

use super::*;

const US: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn stack() -> NetStack {
    NetStack::new(
        NetConfig { mac: US, ip: OUR_IP, prefix_len: 24, gateway: None, ip6: None, gateway6: None },
        Arc::default(),
    )
}

fn arp(op: ArpOperation, from_mac: [u8; 6], from_ip: Ipv4Addr, to_ip: Ipv4Addr, dst: EthernetAddress) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: EthernetAddress(from_mac),
        source_protocol_addr: from_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: to_ip,
    };
    let eth = EthernetRepr { src_addr: EthernetAddress(from_mac), dst_addr: dst, ethertype: EthernetProtocol::Arp };
    let mut buf = vec![0; eth.buffer_len() + repr.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    repr.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    buf
}

fn ping(seq: u16, data: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let icmp = Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: seq, data };
    let ip = Ipv4Repr {
        src_addr: PEER_IP,
        dst_addr: OUR_IP,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(PEER),
        dst_addr: EthernetAddress(US),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0; eth.buffer_len() + ip.buffer_len() + icmp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
    buf
}

fn parse_arp(frame: &[u8]) -> (EthernetAddress, ArpRepr) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
    (eth.dst_addr(), ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap())
}

#[test]
fn answers_arp_for_our_address_and_learns_the_asker() {
    let mut s = stack();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    s.on_frame(&arp(ArpOperation::Request, PEER, PEER_IP, OUR_IP, EthernetAddress::BROADCAST), now, &mut out);
    assert_eq!(out.len(), 1);
    let (dst, repr) = parse_arp(out.get(0));
    assert_eq!(dst, EthernetAddress(PEER));
    let ArpRepr::EthernetIpv4 { operation, source_hardware_addr, source_protocol_addr, target_protocol_addr, .. } =
        repr
    else {
        panic!()
    };
    assert_eq!(operation, ArpOperation::Reply);
    assert_eq!((source_hardware_addr.0, source_protocol_addr, target_protocol_addr), (US, OUR_IP, PEER_IP));
    assert!(s.neighbors.knows(PEER_IP.into()));
    // A request for someone else is not answered and does not add an entry.
    let mut out = FrameBatch::default();
    let other = Ipv4Addr::new(10, 99, 0, 7);
    s.on_frame(
        &arp(ArpOperation::Request, [2, 0, 0, 0, 0, 9], other, Ipv4Addr::new(10, 99, 0, 3), EthernetAddress::BROADCAST),
        now,
        &mut out,
    );
    assert!(out.is_empty());
    assert!(!s.neighbors.knows(other.into()));
}

#[test]
fn answers_ping_with_same_id_seq_and_data() {
    let mut s = stack();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    s.on_frame(&arp(ArpOperation::Request, PEER, PEER_IP, OUR_IP, EthernetAddress::BROADCAST), now, &mut out);
    out.clear();
    s.on_frame(&ping(7, b"payload-123"), now, &mut out);
    assert_eq!(out.len(), 1);
    let eth = EthernetFrame::new_checked(out.get(0)).unwrap();
    assert_eq!((eth.src_addr().0, eth.dst_addr().0), (US, PEER));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src_addr(), ip.dst_addr()), (OUR_IP, PEER_IP));
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(repr, Icmpv4Repr::EchoReply { ident: 0x1234, seq_no: 7, data: b"payload-123" });
    assert_eq!(s.counters().icmp_echo_replies, 1);
}

#[test]
fn ping_from_unknown_neighbor_resolves_it_first() {
    let shared: Arc<SharedNeighbors> = Arc::default();
    let cfg = NetConfig { mac: US, ip: OUR_IP, prefix_len: 24, gateway: None, ip6: None, gateway6: None };
    let mut core_a = NetStack::new(cfg, shared.clone());
    let mut core_b = NetStack::new(cfg, shared);
    let now = Instant::now();
    let mut out = FrameBatch::default();
    core_a.on_frame(&ping(1, b"x"), now, &mut out);
    assert_eq!(out.len(), 1, "an ARP request, not a reply yet");
    let (dst, req) = parse_arp(out.get(0));
    assert_eq!(dst, EthernetAddress::BROADCAST);
    assert!(
        matches!(req, ArpRepr::EthernetIpv4 { operation: ArpOperation::Request, target_protocol_addr, .. } if target_protocol_addr == PEER_IP)
    );
    assert_eq!(core_a.pending(), 1);
    // The reply lands on the other core's queue.
    let mut out_b = FrameBatch::default();
    core_b.on_frame(&arp(ArpOperation::Reply, PEER, PEER_IP, OUR_IP, EthernetAddress(US)), now, &mut out_b);
    assert!(out_b.is_empty());
    let mut out = FrameBatch::default();
    core_a.poll(now + Duration::from_millis(1), &mut out);
    assert_eq!(out.len(), 1, "the parked echo reply leaves once any core learned the MAC");
    assert_eq!(EthernetFrame::new_checked(out.get(0)).unwrap().dst_addr().0, PEER);
    assert_eq!(core_a.pending(), 0);
}

#[test]
fn unresolved_packets_are_retried_then_dropped() {
    let mut s = stack();
    let t0 = Instant::now();
    let mut out = FrameBatch::default();
    s.on_frame(&ping(1, b"x"), t0, &mut out);
    assert_eq!(s.counters().arp_requests_sent, 1);
    s.poll(t0 + Duration::from_millis(1100), &mut out);
    assert_eq!(s.counters().arp_requests_sent, 2);
    s.poll(t0 + Duration::from_secs(4), &mut out);
    assert_eq!(s.pending(), 0);
    assert_eq!(s.counters().drop_arp_unresolved, 1);
}

#[test]
fn bad_frames_are_counted_by_cause() {
    let mut s = stack();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    s.on_frame(&arp(ArpOperation::Request, PEER, PEER_IP, OUR_IP, EthernetAddress::BROADCAST), now, &mut out);
    out.clear();
    let mut bad_ip = ping(1, b"abc");
    bad_ip[14 + 10] ^= 0xff; // IPv4 header checksum
    s.on_frame(&bad_ip, now, &mut out);
    let mut bad_icmp = ping(1, b"abc");
    let n = bad_icmp.len();
    bad_icmp[n - 1] ^= 0x01; // payload byte: ICMP checksum no longer matches
    s.on_frame(&bad_icmp, now, &mut out);
    s.on_frame(&[0u8; 10], now, &mut out);
    let mut other_mac = ping(1, b"abc");
    other_mac[0] = 0x04;
    s.on_frame(&other_mac, now, &mut out);
    let mut ipv6 = ping(1, b"abc");
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    s.on_frame(&ipv6, now, &mut out);
    assert!(out.is_empty());
    let c = s.counters();
    assert_eq!((c.drop_bad_checksum, c.drop_malformed, c.drop_not_for_us, c.drop_unsupported), (2, 1, 1, 1));
    assert_eq!(c.rx_frames, 6);
}

#[test]
fn arbitrary_frames_never_panic_and_are_all_counted() {
    let mut s = stack();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let templates = [ping(3, b"hello"), arp(ArpOperation::Request, PEER, PEER_IP, OUR_IP, EthernetAddress::BROADCAST)];
    for i in 0..20_000u32 {
        let mut f = templates[(i % 2) as usize].clone();
        let flips = 1 + (next(&mut seed) % 4) as usize;
        for _ in 0..flips {
            let at = (next(&mut seed) as usize) % f.len();
            f[at] = next(&mut seed) as u8;
        }
        f.truncate((next(&mut seed) as usize) % (f.len() + 1));
        s.on_frame(&f, now, &mut out);
        out.clear();
    }
    let c = s.counters();
    let answered_or_dropped = c.drop_not_for_us
        + c.drop_malformed
        + c.drop_bad_checksum
        + c.drop_unsupported
        + c.drop_not_our_ip
        + c.drop_fragment
        + c.icmp_echo_replies
        + c.arp_replies_sent
        + c.arp_learned;
    assert_eq!(c.rx_frames, 20_000);
    assert!(answered_or_dropped > 0);
}

fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

// ---- IPv6 ---------------------------------------------------------------------------

const OUR_IP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1);
const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 2);

fn stack6() -> NetStack {
    let cfg =
        NetConfig { mac: US, ip: OUR_IP, prefix_len: 24, gateway: None, ip6: Some((OUR_IP6, 64)), gateway6: None };
    NetStack::new(cfg, Arc::default())
}

/// An IPv6 frame from the peer: `ext` (extension headers, already chained to
/// `upper_proto`) then `upper`.
fn v6_frame(dst: Ipv6Addr, dst_mac: [u8; 6], first: IpProtocol, hop_limit: u8, ext: &[u8], upper: &[u8]) -> Vec<u8> {
    let ip = Ipv6Repr {
        src_addr: PEER_IP6,
        dst_addr: dst,
        next_header: first,
        payload_len: ext.len() + upper.len(),
        hop_limit,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(PEER),
        dst_addr: EthernetAddress(dst_mac),
        ethertype: EthernetProtocol::Ipv6,
    };
    let mut buf = vec![0; eth.buffer_len() + ip.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    ip.emit(&mut Ipv6Packet::new_unchecked(f.payload_mut()));
    buf.extend_from_slice(ext);
    buf.extend_from_slice(upper);
    buf
}

fn icmp6(dst: Ipv6Addr, repr: &Icmpv6Repr<'_>) -> Vec<u8> {
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&PEER_IP6, &dst, &mut Icmpv6Packet::new_unchecked(&mut b[..]), &ChecksumCapabilities::default());
    b
}

fn solicit(target: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(PEER))),
    });
    let group = solicited_node(target);
    v6_frame(group, multicast_mac(group).0, IpProtocol::Icmpv6, hop_limit, &[], &icmp6(group, &ns))
}

fn tcp6(dst: Ipv6Addr) -> Vec<u8> {
    let seg =
        crate::tcp::Segment { src_port: 40000, dst_port: 8080, seq: 1, syn: true, window: 1000, ..Default::default() };
    let repr = seg.to_repr();
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut b[..]),
        &PEER_IP6.into(),
        &dst.into(),
        &ChecksumCapabilities::default(),
    );
    b
}

/// Parses an IPv6 frame we sent: (Ethernet destination, IPv6 header, ICMPv6 message).
fn parse_icmp6(frame: &[u8]) -> (EthernetAddress, Ipv6Repr, Vec<u8>) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let repr = Ipv6Repr::parse(&ip).unwrap();
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&repr.src_addr, &repr.dst_addr), "ICMPv6 checksum");
    (eth.dst_addr(), repr, ip.payload().to_vec())
}

#[test]
fn neighbor_solicitation_for_our_address_is_advertised_and_the_asker_learned() {
    let mut s = stack6();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    s.on_frame(&solicit(OUR_IP6, 255), now, &mut out);
    assert_eq!(out.len(), 1);
    let (dst_mac, ip, icmp) = parse_icmp6(out.get(0));
    assert_eq!((dst_mac.0, ip.src_addr, ip.dst_addr, ip.hop_limit), (PEER, OUR_IP6, PEER_IP6, 255));
    let p = Icmpv6Packet::new_checked(&icmp[..]).unwrap();
    let Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert { flags, target_addr, lladdr }) =
        Icmpv6Repr::parse(&ip.src_addr, &ip.dst_addr, &p, &ChecksumCapabilities::default()).unwrap()
    else {
        panic!("not an advertisement")
    };
    assert_eq!(target_addr, OUR_IP6);
    assert!(flags.contains(NdiscNeighborFlags::SOLICITED) && flags.contains(NdiscNeighborFlags::OVERRIDE));
    assert_eq!(lladdr.map(|l| l.as_bytes().to_vec()), Some(US.to_vec()));
    assert!(s.neighbors.knows(PEER_IP6.into()));
    assert_eq!(s.counters().nd_adverts_sent, 1);
    // Our link-local address is answered too.
    let mut out = FrameBatch::default();
    let ll = NetConfig { mac: US, ..stack6().cfg }.link_local();
    assert_eq!(ll, "fe80::ff:fe00:1".parse::<Ipv6Addr>().unwrap(), "modified EUI-64 of 02:00:00:00:00:01");
    s.on_frame(&solicit(ll, 255), now, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn solicitations_for_others_or_with_a_routed_hop_limit_are_not_answered() {
    let mut s = stack6();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    s.on_frame(&solicit(Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 7), 255), now, &mut out);
    s.on_frame(&solicit(OUR_IP6, 64), now, &mut out);
    assert!(out.is_empty());
    assert_eq!(s.counters().nd_adverts_sent, 0);
    // IPv4-only stacks drop IPv6 as unsupported.
    let mut v4 = stack();
    v4.on_frame(&solicit(OUR_IP6, 255), now, &mut out);
    assert!(out.is_empty());
    assert_eq!(v4.counters().drop_not_for_us, 1, "33:33 multicast is not for an IPv4-only stack");
}

#[test]
fn ping6_from_an_unknown_neighbor_solicits_it_then_answers() {
    let mut s = stack6();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    let echo = Icmpv6Repr::EchoRequest { ident: 9, seq_no: 3, data: b"v6-data" };
    s.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Icmpv6, 64, &[], &icmp6(OUR_IP6, &echo)), now, &mut out);
    assert_eq!(out.len(), 1, "a solicitation first");
    let (dst_mac, ip, _) = parse_icmp6(out.get(0));
    assert_eq!(ip.dst_addr, solicited_node(PEER_IP6));
    assert_eq!(dst_mac.0, [0x33, 0x33, 0xff, 0, 0, 2]);
    assert_eq!((s.counters().nd_solicits_sent, s.pending()), (1, 1));
    // The peer advertises: the parked reply leaves, and is an echo reply.
    let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::SOLICITED,
        target_addr: PEER_IP6,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(PEER))),
    });
    let mut out = FrameBatch::default();
    s.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Icmpv6, 255, &[], &icmp6(OUR_IP6, &na)), now, &mut out);
    assert_eq!(out.len(), 1);
    let (dst_mac, ip, icmp) = parse_icmp6(out.get(0));
    assert_eq!((dst_mac.0, ip.dst_addr), (PEER, PEER_IP6));
    let p = Icmpv6Packet::new_checked(&icmp[..]).unwrap();
    let r = Icmpv6Repr::parse(&ip.src_addr, &ip.dst_addr, &p, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(r, Icmpv6Repr::EchoReply { ident: 9, seq_no: 3, data: b"v6-data" });
    assert_eq!((s.counters().icmp6_echo_replies, s.pending()), (1, 0));
}

#[test]
fn tcp_over_ipv6_is_checked_and_located_past_extension_headers() {
    let mut s = stack6();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    let seg = tcp6(OUR_IP6);
    let t = s.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Tcp, 64, &[], &seg), now, &mut out).expect("TCP");
    assert_eq!((t.src, t.dst, t.start, t.len), (PEER_IP6.into(), OUR_IP6.into(), 54, seg.len()));
    // Hop-by-hop options (8 bytes) then destination options (16 bytes): skipped.
    let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let f = v6_frame(OUR_IP6, US, IpProtocol::HopByHop, 64, &ext, &seg);
    let t = s.on_frame(&f, now, &mut out).expect("TCP after two extension headers");
    assert_eq!(t.start, 54 + 24);
    assert_eq!(&f[t.start..t.start + t.len], &seg[..]);
    // A bad checksum, a fragment, a routing header with segments left, a chain too long,
    // another address: each dropped and counted.
    let mut bad = seg.clone();
    bad[4] ^= 1;
    assert!(s.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Tcp, 64, &[], &bad), now, &mut out).is_none());
    let frag = [6, 0, 0, 1, 0, 0, 0, 1];
    assert!(s.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Ipv6Frag, 64, &frag, &seg), now, &mut out).is_none());
    let routing = [6, 0, 4, 1, 0, 0, 0, 0];
    assert!(s.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Ipv6Route, 64, &routing, &seg), now, &mut out).is_none());
    let mut long = Vec::new();
    for _ in 0..12 {
        long.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    assert!(s.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Ipv6Opts, 64, &long, &seg), now, &mut out).is_none());
    let mut mapped = v6_frame(OUR_IP6, US, IpProtocol::Tcp, 64, &[], &seg);
    mapped[14 + 8..14 + 24].copy_from_slice(&Ipv4Addr::new(10, 99, 0, 2).to_ipv6_mapped().octets());
    assert!(s.on_frame(&mapped, now, &mut out).is_none(), "an IPv4-mapped source is refused");
    let other = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 9);
    assert!(s.on_frame(&v6_frame(other, US, IpProtocol::Tcp, 64, &[], &tcp6(other)), now, &mut out).is_none());
    let c = s.counters();
    assert_eq!(
        (c.tcp_segments, c.drop_bad_checksum, c.drop_fragment, c.drop_ext_header, c.drop_not_our_ip),
        (2, 1, 1, 2, 1)
    );
    assert!(out.is_empty());
}

#[test]
fn arbitrary_ipv6_frames_never_panic() {
    let mut s = stack6();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let echo = Icmpv6Repr::EchoRequest { ident: 1, seq_no: 1, data: b"abc" };
    let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    let templates = [
        solicit(OUR_IP6, 255),
        v6_frame(OUR_IP6, US, IpProtocol::Icmpv6, 64, &[], &icmp6(OUR_IP6, &echo)),
        v6_frame(OUR_IP6, US, IpProtocol::HopByHop, 64, &ext, &tcp6(OUR_IP6)),
    ];
    for i in 0..30_000u32 {
        let mut f = templates[(i % 3) as usize].clone();
        for _ in 0..1 + (next(&mut seed) % 4) {
            let at = (next(&mut seed) as usize) % f.len();
            f[at] = next(&mut seed) as u8;
        }
        f.truncate((next(&mut seed) as usize) % (f.len() + 1));
        s.on_frame(&f, now, &mut out);
        out.clear();
    }
    assert_eq!(s.counters().rx_frames, 30_000);
}

#[test]
fn an_unknown_next_header_gets_a_parameter_problem_at_a_bounded_rate() {
    let mut s = stack6();
    let now = Instant::now();
    let mut out = FrameBatch::default();
    // Learn the peer first so errors leave at once.
    s.on_frame(&solicit(OUR_IP6, 255), now, &mut out);
    out.clear();
    let f = v6_frame(OUR_IP6, US, IpProtocol::Unknown(253), 64, &[], b"experimental");
    s.on_frame(&f, now, &mut out);
    assert_eq!(out.len(), 1);
    let (_, ip, icmp) = parse_icmp6(out.get(0));
    let p = Icmpv6Packet::new_checked(&icmp[..]).unwrap();
    let r = Icmpv6Repr::parse(&ip.src_addr, &ip.dst_addr, &p, &ChecksumCapabilities::default()).unwrap();
    assert!(
        matches!(
            r,
            Icmpv6Repr::ParamProblem { reason: smoltcp::wire::Icmpv6ParamProblem::UnrecognizedNxtHdr, pointer: 6, .. }
        ),
        "{r:?}"
    );
    for _ in 0..500 {
        s.on_frame(&f, now, &mut out);
    }
    assert_eq!(s.counters().icmp6_errors_sent, u64::from(ICMP6_ERRORS_PER_SEC));
    s.on_frame(&f, now + Duration::from_secs(1), &mut out);
    assert_eq!(s.counters().icmp6_errors_sent, u64::from(ICMP6_ERRORS_PER_SEC) + 1, "a new second, a new budget");
}

#[test]
fn an_advertisement_arriving_on_another_core_completes_the_solicitation() {
    let shared: Arc<SharedNeighbors> = Arc::default();
    let cfg = stack6().cfg;
    let mut core_a = NetStack::new(cfg, shared.clone());
    let mut core_b = NetStack::new(cfg, shared);
    let now = Instant::now();
    let mut out = FrameBatch::default();
    let echo = Icmpv6Repr::EchoRequest { ident: 1, seq_no: 1, data: b"x" };
    core_a.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Icmpv6, 64, &[], &icmp6(OUR_IP6, &echo)), now, &mut out);
    assert_eq!((core_a.counters().nd_solicits_sent, core_a.pending()), (1, 1));
    // The answer comes in on core B, which asked nothing.
    let na = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
        target_addr: PEER_IP6,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(PEER))),
    });
    let mut out_b = FrameBatch::default();
    core_b.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Icmpv6, 255, &[], &icmp6(OUR_IP6, &na)), now, &mut out_b);
    assert_eq!(core_b.counters().nd_learned, 1);
    let mut out = FrameBatch::default();
    core_a.poll(now + Duration::from_millis(1), &mut out);
    assert_eq!((out.len(), core_a.pending()), (1, 0), "the parked echo reply leaves");
    // An unsolicited advertisement for a stranger is ignored and counted.
    let stranger = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::OVERRIDE,
        target_addr: Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0x77),
        lladdr: Some(RawHardwareAddress::from(EthernetAddress([2, 0, 0, 0, 0, 0x77]))),
    });
    core_b.on_frame(&v6_frame(OUR_IP6, US, IpProtocol::Icmpv6, 255, &[], &icmp6(OUR_IP6, &stranger)), now, &mut out_b);
    assert!(!core_b.neighbors.knows(Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0x77).into()));
    assert_eq!(core_b.counters().drop_unsupported, 1);
}

// ---- the prefetch hint -------------------------------------------------------------

fn tcp4() -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let seg =
        crate::tcp::Segment { src_port: 40001, dst_port: 8080, seq: 1, syn: true, window: 1000, ..Default::default() };
    let tcp = seg.to_repr();
    let ip = Ipv4Repr {
        src_addr: PEER_IP,
        dst_addr: OUR_IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(PEER),
        dst_addr: EthernetAddress(US),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut f);
    let mut p = Ipv4Packet::new_unchecked(f.payload_mut());
    ip.emit(&mut p, &caps);
    tcp.emit(&mut TcpPacket::new_unchecked(p.payload_mut()), &PEER_IP.into(), &OUR_IP.into(), &caps);
    buf
}

#[test]
fn the_flow_peek_names_the_endpoints_the_stack_finds_and_never_panics() {
    use std::net::SocketAddr;
    let now = Instant::now();
    let mut out = FrameBatch::default();
    let v4 = tcp4();
    let v6 = v6_frame(OUR_IP6, US, IpProtocol::Tcp, 64, &[], &tcp6(OUR_IP6));
    let cases = [
        (v4.clone(), stack(), SocketAddr::new(OUR_IP.into(), 8080), SocketAddr::new(PEER_IP.into(), 40001)),
        (v6.clone(), stack6(), SocketAddr::new(OUR_IP6.into(), 8080), SocketAddr::new(PEER_IP6.into(), 40000)),
    ];
    for (frame, mut s, local, remote) in cases {
        assert_eq!(peek_tcp_flow(&frame), Some((local, remote)));
        let seen = s.on_frame(&frame, now, &mut out).expect("a TCP segment for us");
        assert_eq!((seen.dst, seen.src), (local.ip(), remote.ip()));
        // Every truncation is answered, with None once the ports are cut off.
        for n in 0..frame.len() {
            let p = peek_tcp_flow(&frame[..n]);
            assert!(p.is_none() || p == Some((local, remote)), "{n}: {p:?}");
        }
    }
    assert_eq!(peek_tcp_flow(&ping(1, b"x")), None);
    assert_eq!(peek_tcp_flow(&arp(ArpOperation::Request, PEER, PEER_IP, OUR_IP, EthernetAddress::BROADCAST)), None);
    // Random bytes never panic.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..20_000usize {
        let mut f = if i % 2 == 0 { v4.clone() } else { v6.clone() };
        for _ in 0..3 {
            let at = (next(&mut seed) as usize) % f.len();
            f[at] = next(&mut seed) as u8;
        }
        f.truncate((next(&mut seed) as usize) % (f.len() + 1));
        let _ = peek_tcp_flow(&f);
    }
}
