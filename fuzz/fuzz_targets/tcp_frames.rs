//! Arbitrary frames into the receive path: Ethernet → IPv4 or IPv6 → TCP engine.
//! Input: frames, each prefixed by a 2-byte little-endian length; the last byte of a
//! frame's length prefix also sets how far the clock moves (see
//! `px_dataplane::fuzzing::FrameHarness::run`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use px_dataplane::fuzzing::FrameHarness;

fuzz_target!(|data: &[u8]| {
    FrameHarness::run(data);
});
