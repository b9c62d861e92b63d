//! Arena micro-benchmarks: bump allocation, in-place vec growth, and rewind.

use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use px_dataplane::mem::{Arena, ChunkPool, HugepagePolicy, Region, HUGEPAGE_BYTES};

fn pool() -> Rc<ChunkPool> {
    Rc::new(ChunkPool::new(Region::map(8 * HUGEPAGE_BYTES, None, HugepagePolicy::Auto).unwrap(), 64 << 10))
}

fn bench_arena(c: &mut Criterion) {
    let mut g = c.benchmark_group("arena");
    let mut arena = Arena::new(pool(), 4 << 20);
    g.throughput(Throughput::Bytes(64 * 16));
    g.bench_function("alloc_64B_x16_then_rewind", |b| {
        b.iter(|| {
            let mark = arena.mark();
            for _ in 0..16 {
                std::hint::black_box(arena.alloc_bytes(64).unwrap());
            }
            arena.rewind(mark);
        })
    });
    g.throughput(Throughput::Bytes(256 << 10));
    g.bench_function("vec_grow_256KiB_then_reset", |b| {
        let chunk = [7u8; 1024];
        b.iter(|| {
            {
                let mut v = arena.vec();
                for _ in 0..256 {
                    v.extend_from_slice(&chunk).unwrap();
                }
                std::hint::black_box(v.into_slice());
            }
            arena.reset();
        })
    });
    g.finish();
}

criterion_group!(benches, bench_arena);
criterion_main!(benches);
