//! Cachegrind probe of the TCP engine's per-segment ingress: `ingress_probe N M` opens N
//! established connections, then feeds M 64-byte segments round-robin over them (the
//! bench's pattern). Run it twice, with M and with 0, under
//! `valgrind --tool=cachegrind` and subtract: instructions and cache misses per segment
//! (docs/tcp.md).

#[path = "../../benches/tcp_fixture.rs"]
mod fixture;
use fixture::{established, feed};

fn main() {
    let n: u32 = std::env::args().nth(1).unwrap().parse().unwrap();
    let m: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let (mut eng, mut seqs, now) = established(n);
    let payload = [b'x'; 64];
    for i in 0..m {
        let k = (i.wrapping_mul(2_654_435_761) % n) as usize;
        feed(&mut eng, now, &mut seqs, k, &payload);
    }
    println!("{}", eng.connections());
}
