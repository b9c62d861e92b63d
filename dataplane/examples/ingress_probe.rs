//! Cachegrind probe of the TCP engine's per-segment ingress: `ingress_probe N M` opens N
//! established connections, then feeds M 64-byte segments round-robin over them (the
//! bench's pattern). Run it twice, with M and with 0, under
//! `valgrind --tool=cachegrind` and subtract: instructions and cache misses per segment
//! (docs/tcp.md).

use px_dataplane::tcp::Segment;

#[path = "../../benches/tcp_fixture.rs"]
mod fixture;
use fixture::{established, peer, SERVER};

fn main() {
    let n: u32 = std::env::args().nth(1).unwrap().parse().unwrap();
    let m: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let (mut eng, mut seqs, now) = established(n);
    let payload = [b'x'; 64];
    for i in 0..m {
        let k = (i.wrapping_mul(2_654_435_761) % n) as usize;
        let p = peer(k as u32);
        let (seq, ack) = seqs[k];
        let seg = Segment {
            src_port: p.port(),
            dst_port: 8080,
            seq,
            ack: Some(ack),
            window: 65535,
            payload: &payload,
            ..Default::default()
        };
        eng.on_segment(now, SERVER, p.ip(), &seg, &mut (), &mut |_| {});
        seqs[k].0 = seq.wrapping_add(payload.len() as u32);
    }
    println!("{}", eng.connections());
}
