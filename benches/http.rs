//! HTTP micro-benchmarks through the dispatcher (engine + routing + sync handler +
//! response), single and pipelined ×16.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use px_dataplane::app::{
    AppSet, ControlPlane, Ctx, Dispatch, DispatchConfig, HandlerError, Reply, Route, Router, Shared,
};
use px_dataplane::http::{HttpLimits, Method, Request, Response};
use px_dataplane::mem::{ChunkPool, HugepagePolicy, Region, HUGEPAGE_BYTES};

fn plaintext<'a>(_: &'a Request<'a>, _: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    Ok(Response::ok("text/plain", b"Hello, World!").into())
}

fn json<'a>(_: &'a Request<'a>, cx: &mut Ctx<'a>) -> Result<Reply<'a>, HandlerError> {
    let mut body = cx.arena().vec();
    serde_json::to_writer(&mut body, &serde_json::json!({"message": "Hello, World!"})).unwrap();
    Ok(Response::ok("application/json", body.into_slice()).into())
}

const PLAIN: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: server\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20130501 Firefox/30.0 AppleWebKit/600.00 Chrome/30.0.0000.0 Trident/10.0 Safari/600.00\r\nCookie: uid=12345678901234567890; __utma=1.1234567890.1234567890.1234567890.1234567890.12; wd=2560x1600\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nConnection: keep-alive\r\n\r\n";

fn bench_http(c: &mut Criterion) {
    let mut router = Router::new();
    router.add(Route::sync(Method::Get, "/plaintext", plaintext)).unwrap();
    router.add(Route::sync(Method::Get, "/json", json)).unwrap();
    let apps = Arc::new(AppSet::new(router, Shared::default()));
    let plane = ControlPlane::start(16).unwrap();
    let pool = Rc::new(ChunkPool::new(Region::map(4 * HUGEPAGE_BYTES, None, HugepagePolicy::Auto).unwrap(), 64 << 10));
    let cfg = DispatchConfig {
        limits: HttpLimits::default(),
        arena_cap: 4 << 20,
        deadline: Duration::from_secs(5),
        max_in_flight: 1024,
        file_reads: 512,
    };
    let mut d = Dispatch::new(apps, cfg, pool, plane.handle());
    let mut conn = d.open();
    let json_req = PLAIN.to_vec().into_iter().collect::<Vec<u8>>();
    let json_req = String::from_utf8(json_req).unwrap().replacen("/plaintext", "/json", 1).into_bytes();
    let pipelined: Vec<u8> = PLAIN.repeat(16);

    let mut g = c.benchmark_group("http");
    for (name, input) in [("plaintext", PLAIN.to_vec()), ("json", json_req), ("plaintext_pipelined_x16", pipelined)] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                d.received(0, &mut conn, &input);
                let n = conn.http.output_len();
                assert!(n > 0);
                d.consumed(0, &mut conn, n);
            })
        });
    }
    g.finish();
    drop(conn);
    plane.shutdown();
}

criterion_group!(benches, bench_http);
criterion_main!(benches);
