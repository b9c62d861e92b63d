//! Packet and socket I/O backends, one folder each.
//!
//! - `kernel`: kernel TCP sockets (the kernel is the TCP stack); the fallback where AF_XDP
//!   cannot run and the baseline the bypass path is measured against.
//! - AF_XDP and the `PacketIo` trait arrive with the userspace TCP engine.

pub mod kernel;
