//! NetStack tests: frames built with smoltcp::wire as a Linux peer would send them.

use super::*;

const US: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn stack() -> NetStack {
    NetStack::new(NetConfig { mac: US, ip: OUR_IP, prefix_len: 24, gateway: None }, Arc::default())
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
    assert!(s.neighbors.knows(PEER_IP));
    // A request for someone else is not answered and does not add an entry.
    let mut out = FrameBatch::default();
    let other = Ipv4Addr::new(10, 99, 0, 7);
    s.on_frame(
        &arp(ArpOperation::Request, [2, 0, 0, 0, 0, 9], other, Ipv4Addr::new(10, 99, 0, 3), EthernetAddress::BROADCAST),
        now,
        &mut out,
    );
    assert!(out.is_empty());
    assert!(!s.neighbors.knows(other));
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
    let cfg = NetConfig { mac: US, ip: OUR_IP, prefix_len: 24, gateway: None };
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
