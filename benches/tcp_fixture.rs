//! The TCP engine fixture shared by benches/tcp.rs and dataplane/examples/ingress_probe.rs:
//! an application that takes bytes and answers nothing, and an engine with N established
//! connections.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use px_dataplane::tcp::{ConnId, Engine, Segment, SendQueue, TcpApp, TcpConfig};

/// An application that takes bytes and answers nothing (pure ingress).
pub struct Sink;

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

pub const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));

pub fn peer(i: u32) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(0x0a00_0000 + (i >> 14)).into(), 1024 + (i & 0x3fff) as u16)
}

/// An engine with `n` established connections; returns it and each one's next ACK.
pub fn established(n: u32) -> (Engine<Sink, ()>, Vec<(u32, u32)>, Instant) {
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

/// Hands connection `k` its next in-order data segment carrying `payload` (the
/// per-segment step of the bench and of the cachegrind probe).
pub fn feed(eng: &mut Engine<Sink, ()>, now: Instant, seqs: &mut [(u32, u32)], k: usize, payload: &[u8]) {
    let p = peer(k as u32);
    let (seq, ack) = seqs[k];
    let seg = Segment {
        src_port: p.port(),
        dst_port: 8080,
        seq,
        ack: Some(ack),
        window: 65535,
        payload,
        ..Default::default()
    };
    eng.on_segment(now, SERVER, p.ip(), &seg, &mut (), &mut |_| {});
    seqs[k].0 = seq.wrapping_add(payload.len() as u32);
}
