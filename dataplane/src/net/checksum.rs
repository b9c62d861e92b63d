//! The Internet checksum (RFC 1071), eight bytes per add: the software path for TCP
//! segments when the transmit path cannot finish checksums itself, and the completion of
//! a [`PartialChecksum`](crate::nic::PartialChecksum).
//!
//! Values are as the header field holds them: a `u16` whose big-endian bytes are the
//! bytes on the wire.

use std::net::IpAddr;

/// The ones'-complement sum of `data`, folded to 16 bits, not complemented.
pub fn sum(data: &[u8]) -> u16 {
    // RFC 1071 §2(B): the sum of native-order words, folded, is the byte-swapped sum of
    // big-endian 16-bit words, for any word width that is a multiple of 16 bits.
    let (chunks, rest) = data.as_chunks::<8>();
    let mut acc: u64 = 0;
    let mut carries: u64 = 0;
    for c in chunks {
        let (s, o) = acc.overflowing_add(u64::from_ne_bytes(*c));
        acc = s;
        carries += u64::from(o);
    }
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let (s, o) = acc.overflowing_add(u64::from_ne_bytes(tail));
    carries += u64::from(o);
    // End-around carry: the carries out of bit 63 are worth 1 each.
    let (s, o) = s.overflowing_add(carries);
    let acc = s + u64::from(o);
    u16::from_be_bytes(fold(acc).to_ne_bytes())
}

/// The folded sum of the pseudo-header for an upper-layer packet of `len` bytes with
/// protocol `proto` (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6).
///
/// # Panics
/// If the two addresses are of different families.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u16 {
    let tail = [(len >> 16) as u16, len as u16, 0, u16::from(proto)];
    let mut buf = [0u8; 40];
    let n = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            buf[..4].copy_from_slice(&s.octets());
            buf[4..8].copy_from_slice(&d.octets());
            8
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            buf[..16].copy_from_slice(&s.octets());
            buf[16..32].copy_from_slice(&d.octets());
            32
        }
        _ => panic!("pseudo-header over addresses of two families"),
    };
    for (i, w) in tail.iter().enumerate() {
        buf[n + 2 * i..n + 2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    sum(&buf[..n + 8])
}

/// Folds a 64-bit ones'-complement sum to 16 bits (native word order).
fn fold(acc: u64) -> u16 {
    let mut f = (acc >> 32) + (acc & 0xffff_ffff);
    // At most three more folds: < 2^33, then < 0x30000, then <= 0x10001, then < 0x10000.
    f = (f >> 16) + (f & 0xffff);
    f = (f >> 16) + (f & 0xffff);
    f = (f >> 16) + (f & 0xffff);
    f as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpProtocol, Ipv4Address, TcpPacket};

    /// The textbook definition: big-endian 16-bit words, end-around carry.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for pair in data.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            s += u32::from(w);
            s = (s >> 16) + (s & 0xffff);
        }
        s as u16
    }

    #[test]
    fn sum_matches_the_definition_at_every_length_and_alignment() {
        let mut x: u32 = 0x1234_5678;
        let bytes: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for start in 0..9 {
            for len in (0..200).chain([1447, 1448, 1460, 2047, 2900]) {
                let d = &bytes[start..start + len];
                assert_eq!(sum(d), reference(d), "start {start} len {len}");
            }
        }
        // All ones: the carries must wrap round, not be lost.
        let ff = vec![0xff; 1500];
        assert_eq!(sum(&ff), reference(&ff));
        assert_eq!(sum(&[]), 0);
        for acc in [u64::MAX - 1, 0x0000_ffff_ffff_ffff, 0xffff_0000_ffff_fffe, 0x0001_fffe_0000_ffff] {
            let folded = fold(acc);
            let by_words: u64 = (0..4).map(|i| (acc >> (16 * i)) & 0xffff).sum();
            let mut r = by_words;
            while r > 0xffff {
                r = (r >> 16) + (r & 0xffff);
            }
            assert_eq!(u64::from(folded), r, "fold of {acc:#x}");
        }
    }

    #[test]
    fn a_finished_partial_tcp_checksum_verifies_and_catches_a_flipped_bit() {
        let (src, dst) = (Ipv4Address::new(10, 99, 0, 1), Ipv4Address::new(10, 99, 0, 2));
        let mut seg = vec![0u8; 20 + 1001];
        seg[12] = 5 << 4;
        for (i, b) in seg[20..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let ph = pseudo_header(src.into(), dst.into(), IpProtocol::Tcp.into(), seg.len() as u32);
        seg[16..18].copy_from_slice(&ph.to_be_bytes());
        crate::nic::PartialChecksum { start: 0, offset: 16 }.finish(&mut seg);
        let p = TcpPacket::new_unchecked(&seg[..]);
        assert!(p.verify_checksum(&src.into(), &dst.into()));
        seg[30] ^= 1;
        assert!(!TcpPacket::new_unchecked(&seg[..]).verify_checksum(&src.into(), &dst.into()));
    }
}
