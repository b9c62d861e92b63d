//! px-appliance's runtime: packet I/O backends, the HTTP/1.1 engine, rewindable arenas,
//! routing and the per-core loops.
//!
//! Layers, each testable alone: `nic` (packet or socket I/O) → `http` (sans-I/O engine)
//! → `app` (router, handler API, control thread) → apps (in the `px-apps` crate).
//! `unsafe` is denied here and allowed only in `mem` and `nic`, each block with a
//! `// SAFETY:` note.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod app;
pub mod config;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
#[allow(unsafe_code)]
pub mod mem;
pub mod net;
#[allow(unsafe_code)]
pub mod nic;
pub mod packet_loop;
pub mod runtime;
pub mod tcp;
