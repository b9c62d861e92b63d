//! Request bytes into the HTTP engine, split at arbitrary points, with the transport,
//! deadlines, deferred answers and the peer's close in between (see
//! `px_dataplane::fuzzing::HttpHarness` for the script format and the contract checked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use px_dataplane::fuzzing::HttpHarness;

fuzz_target!(|data: &[u8]| {
    HttpHarness::run(data);
});
