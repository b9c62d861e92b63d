//! The whole packet path end to end: a scripted client TCP (opening connections with
//! chosen options, sending request bytes in and out of order, withholding and faking
//! ACKs, losing the server's frames, resetting, mutating frames) against the network
//! layer, our TCP engine, the HTTP engine and handlers (sync, streaming, async with
//! timers), on a virtual clock. See `px_dataplane::fuzzing::StackHarness` for the
//! script format and the contract checked (well-formed frames with correct checksums,
//! well-formed responses per connection, nothing held once the clients are gone).
#![no_main]

use libfuzzer_sys::fuzz_target;
use px_dataplane::fuzzing::StackHarness;

fuzz_target!(|data: &[u8]| {
    StackHarness::run(data);
});
