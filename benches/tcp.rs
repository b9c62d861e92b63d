//! TCP engine benchmarks: per-segment ingress cost with 10, 1k, 10k and 100k
//! established connections (it must stay flat: hash demux, no scans), and engine memory
//! per idle established connection. smoltcp's interface, measured the same way over an
//! in-memory device, took 125 ns at 10 connections and 393 µs at 50k (docs/tcp.md).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use px_dataplane::tcp::{ConnId, Engine, Segment, SendQueue, TcpApp, TcpConfig};

/// An application that takes bytes and answers nothing (pure ingress).
struct Sink;

impl TcpApp<()> for Sink {
    fn open(_: ConnId, _: &mut ()) -> Self {
        Sink
    }
    fn received(&mut self, _: &[u8], _: ConnId, _: &mut ()) {}
    fn peer_closed(&mut self, _: ConnId, _: &mut ()) {}
    fn send_queue(&self) -> &dyn SendQueue {
        static NOTHING: Vec<u8> = Vec::new();
        &NOTHING
    }
    fn acked(&mut self, _: usize, _: ConnId, _: &mut ()) {}
    fn finishing(&self) -> bool {
        false
    }
    fn buffered(&self) -> usize {
        0
    }
}

const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));

fn peer(i: u32) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(0x0a00_0000 + (i >> 14)).into(), 1024 + (i & 0x3fff) as u16)
}

/// An engine with `n` established connections; returns it and each one's next ACK.
fn established(n: u32) -> (Engine<Sink, ()>, Vec<(u32, u32)>, Instant) {
    let now = Instant::now();
    let cfg =
        TcpConfig { syn_backlog: n as usize + 1, timestamps: false, delayed_ack_ms: 1_000_000, ..TcpConfig::default() };
    let mut eng = Engine::new(cfg, now, 7);
    eng.listen(8080);
    let mut seqs = Vec::with_capacity(n as usize);
    for i in 0..n {
        let p = peer(i);
        let syn =
            Segment { src_port: p.port(), dst_port: 8080, seq: 1000, syn: true, window: 65535, ..Default::default() };
        let mut iss = 0;
        eng.on_segment(now, SERVER, p.ip(), &syn, &mut (), &mut |o| iss = o.seg.seq);
        let ack = Segment {
            src_port: p.port(),
            dst_port: 8080,
            seq: 1001,
            ack: Some(iss + 1),
            window: 65535,
            ..Default::default()
        };
        eng.on_segment(now, SERVER, p.ip(), &ack, &mut (), &mut |_| {});
        seqs.push((1001, iss + 1));
    }
    (eng, seqs, now)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix(" kB")?.trim().parse().ok()))
        .unwrap_or(0)
}

fn bench_ingress(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcp/ingress");
    let payload = [b'x'; 64];
    for n in [10u32, 1_000, 10_000, 100_000] {
        let (mut eng, mut seqs, now) = established(n);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut i = 0u32;
            b.iter(|| {
                // Round-robin over all connections: every segment is a table lookup,
                // sequence checks, in-order delivery.
                let k = (i.wrapping_mul(2_654_435_761) % n) as usize;
                i = i.wrapping_add(1);
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
            })
        });
    }
    g.finish();
}

fn report_memory(_: &mut Criterion) {
    let before = rss_kib();
    let (eng, _, _) = established(100_000);
    let after = rss_kib();
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / 100_000.0;
    println!(
        "tcp/memory: {} connections, RSS +{} KiB = {:.0} bytes per idle established connection \
         (engine state; type size {} bytes + table entry)",
        eng.connections(),
        after.saturating_sub(before),
        per_conn,
        Engine::<Sink, ()>::conn_state_bytes()
    );
}

criterion_group!(benches, report_memory, bench_ingress);
criterion_main!(benches);
