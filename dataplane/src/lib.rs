//! px-appliance's runtime: packet I/O backends, the HTTP/1.1 engine, rewindable arenas,
//! routing and the per-core loops.
//!
//! Layers, each testable alone and importing only downward: `mem` and `nic` (packet
//! I/O) → `net` (ARP, ICMP, IPv4) → `tcp` (our TCP engine) → `http` (the HTTP/1.1
//! engine) → `app` (routing, handlers, the per-core executor, outbound connections) →
//! `transport` (kernel sockets, or the packet path) → `runtime` (start-up and the one
//! per-core loop) → apps (in the `px-apps` crate). `http` and `tcp` are sans-I/O.
//! `unsafe` is denied here and allowed only in `mem` and `nic`, each block with a
//! `// SAFETY:` note.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod app;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
#[allow(unsafe_code)]
pub mod mem;
pub mod net;
#[allow(unsafe_code)]
pub mod nic;
pub mod runtime;
pub mod stats;
pub mod tcp;
pub mod transport;
