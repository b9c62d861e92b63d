//! Receive-side scaling as a NIC computes it: the Toeplitz hash of a packet's 4-tuple
//! and the indirection table that maps the hash to a receive queue. Knowing both lets a
//! core choose the local port of an outbound connection so that the peer's replies land
//! on its own queue, with no hand-off between cores.

use std::net::IpAddr;

/// The Toeplitz hash of `input` under `key` (Microsoft RSS; the key must be at least
/// `input.len() + 4` bytes: 40-byte keys cover IPv4 and IPv6 4-tuples).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The 32 key bits aligned with the current input bit, and the key bit after them.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// A NIC's RSS setting: its key and indirection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssTable {
    key: Vec<u8>,
    table: Vec<u32>,
}

impl RssTable {
    /// A setting from its key (at least 16 bytes) and indirection table (not empty).
    pub fn new(key: Vec<u8>, table: Vec<u32>) -> Option<RssTable> {
        (key.len() >= 16 && !table.is_empty()).then_some(RssTable { key, table })
    }

    /// The queue a TCP packet from `src:sport` to `dst:dport` is received on (the
    /// IPv4 or IPv6 4-tuple hash, as the addresses are).
    pub fn queue(&self, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> usize {
        let mut input = [0u8; 36];
        let n = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                input[..4].copy_from_slice(&s.octets());
                input[4..8].copy_from_slice(&d.octets());
                8
            }
            (s, d) => {
                let v6 = |a: IpAddr| match a {
                    IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                    IpAddr::V6(v) => v.octets(),
                };
                input[..16].copy_from_slice(&v6(s));
                input[16..32].copy_from_slice(&v6(d));
                32
            }
        };
        input[n..n + 2].copy_from_slice(&sport.to_be_bytes());
        input[n + 2..n + 4].copy_from_slice(&dport.to_be_bytes());
        let h = toeplitz(&self.key, &input[..n + 4]);
        self.table[h as usize % self.table.len()] as usize
    }

    /// The indirection table: entry i is the queue of hashes whose low bits are i.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// Parses what `ethtool -x IFACE` prints; `None` unless it shows an indirection
    /// table, a key, and the Toeplitz function switched on.
    pub fn from_ethtool(text: &str) -> Option<RssTable> {
        let mut table = Vec::new();
        let mut key = Vec::new();
        let mut toeplitz_on = false;
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let t = line.trim();
            if t.starts_with("RSS hash key:") {
                let hex = lines.next().unwrap_or("").trim();
                key = hex.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().ok()?;
            } else if let Some(rest) = t.strip_prefix("toeplitz:") {
                toeplitz_on = rest.trim() == "on";
            } else if let Some((idx, queues)) = t.split_once(':') {
                if idx.trim().parse::<usize>().is_ok() {
                    for q in queues.split_whitespace() {
                        table.push(q.parse().ok()?);
                    }
                }
            }
        }
        if !toeplitz_on {
            return None;
        }
        RssTable::new(key, table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The key of Microsoft's "Verifying the RSS hash calculation".
    const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca,
        0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b,
        0xbe, 0xac, 0x01, 0xfa,
    ];

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&src.parse::<Ipv4Addr>().unwrap().octets());
        b[4..8].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
        b[8..10].copy_from_slice(&sport.to_be_bytes());
        b[10..].copy_from_slice(&dport.to_be_bytes());
        b
    }

    #[test]
    fn microsoft_verification_vectors() {
        for (src, sport, dst, dport, ip_only, with_tcp) in [
            ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323e8fc2, 0x51ccc178),
            ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xd718262a, 0xc626b0ea),
            ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xd2d0a5de, 0x5c2b394a),
            ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xafc7327f),
            ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x5d1809c5, 0x10e828a2),
        ] {
            let t = tuple(src, sport, dst, dport);
            assert_eq!(toeplitz(&KEY, &t[..8]), ip_only, "{src} → {dst}");
            assert_eq!(toeplitz(&KEY, &t), with_tcp, "{src}:{sport} → {dst}:{dport}");
        }
    }

    #[test]
    fn microsoft_verification_vectors_for_ipv6() {
        for (src, sport, dst, dport, ip_only, with_tcp) in [
            ("3ffe:2501:200:1fff::7", 2794, "3ffe:2501:200:3::1", 1766, 0x2cc18cd5, 0x40207d3d),
            ("3ffe:501:8::260:97ff:fe40:efab", 14230, "ff02::1", 4739, 0x0f0c461c, 0xdde51bbf),
            ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, "fe80::200:f8ff:fe21:67cf", 38024, 0x4b61e985, 0x02d1feef),
        ] {
            let mut t = [0u8; 36];
            t[..16].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
            t[16..32].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
            t[32..34].copy_from_slice(&u16::to_be_bytes(sport));
            t[34..].copy_from_slice(&u16::to_be_bytes(dport));
            assert_eq!(toeplitz(&KEY, &t[..32]), ip_only, "{src} → {dst}");
            assert_eq!(toeplitz(&KEY, &t), with_tcp, "{src}:{sport} → {dst}:{dport}");
            // RssTable::queue hashes the same input.
            let rss = RssTable::new(KEY.to_vec(), (0..128).collect()).unwrap();
            let q = rss.queue(src.parse().unwrap(), dst.parse().unwrap(), sport, dport);
            assert_eq!(q, (with_tcp % 128) as usize);
        }
    }

    #[test]
    fn parses_ethtool_output_and_maps_queues() {
        let text = "RX flow hash indirection table for eth0 with 4 RX ring(s):\n\
                    \x20   0:      0     1     2     3     0     1     2     3\n\
                    \x20   8:      0     1     2     3     0     1     2     3\n\
                    RSS hash key:\n\
                    6d:5a:56:da:25:5b:0e:c2:41:67:25:3d:43:a3:8f:b0:d0:ca:2b:cb:ae:7b:30:b4:77:cb:2d:a3:80:30:f2:0c:6a:42:b7:3b:be:ac:01:fa\n\
                    RSS hash function:\n    toeplitz: on\n    xor: off\n    crc32: off\n";
        let rss = RssTable::from_ethtool(text).expect("parsed");
        let h = 0x51ccc178u32;
        let q = rss.queue("66.9.149.187".parse().unwrap(), "161.142.100.80".parse().unwrap(), 2794, 1766);
        assert_eq!(q, [0, 1, 2, 3][(h % 16) as usize % 4]);
        assert!(RssTable::from_ethtool(&text.replace("toeplitz: on", "toeplitz: off")).is_none());
        assert!(RssTable::from_ethtool("Cannot get RX ring count: Operation not supported").is_none());
    }
}
