//! TCP engine benchmarks: per-segment ingress cost with 10, 1k, 10k and 100k
//! established connections (it must stay flat: hash demux, no scans), and engine memory
//! per idle established connection. smoltcp's interface, measured the same way over an
//! in-memory device, took 125 ns at 10 connections and 393 µs at 50k (docs/tcp.md).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use px_dataplane::tcp::Engine;

#[path = "tcp_fixture.rs"]
mod fixture;
use fixture::{established, feed, peer, Sink, SERVER};

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
                feed(&mut eng, now, &mut seqs, k, &payload);
            })
        });
    }
    g.finish();
    // The same segments handed over in batches of 32, as a loop turn hands over what the
    // RX ring holds: the connections' state is prefetched for the whole batch first.
    let mut g = c.benchmark_group("tcp/ingress-batch32");
    for n in [10u32, 1_000, 10_000, 100_000] {
        let (mut eng, mut seqs, now) = established(n);
        g.throughput(Throughput::Elements(32));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut i = 0u32;
            let mut batch = [0usize; 32];
            b.iter(|| {
                for k in batch.iter_mut() {
                    *k = (i.wrapping_mul(2_654_435_761) % n) as usize;
                    i = i.wrapping_add(1);
                    eng.prefetch(std::net::SocketAddr::new(SERVER, 8080), peer(*k as u32));
                }
                for &k in &batch {
                    feed(&mut eng, now, &mut seqs, k, &payload);
                }
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
