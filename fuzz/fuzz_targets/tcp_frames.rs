//! Arbitrary frames into the receive path: Ethernet → IPv4 or IPv6 → TCP engine.
//! Input: frames, each prefixed by a 2-byte little-endian length; the last byte of a
//! frame's length prefix also sets how far the clock moves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use px_dataplane::fuzzing::{FrameHarness, MAX_CONNECTIONS};

fuzz_target!(|data: &[u8]| {
    let mut h = FrameHarness::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize % 1600;
        let tick = u64::from(rest[1] % 64);
        rest = &rest[2..];
        let frame = &rest[..len.min(rest.len())];
        h.feed(frame, tick);
        rest = &rest[frame.len()..];
        assert!(h.connections() <= MAX_CONNECTIONS);
    }
});
