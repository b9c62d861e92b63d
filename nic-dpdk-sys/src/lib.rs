//! Raw bindings to the system's DPDK, generated at build time by bindgen from the headers
//! pkg-config's `libdpdk` (≥ 22.11) points at; only the functions px-appliance's DPDK
//! backend calls are allowlisted (build.rs). The static inline fast-path functions
//! (`rte_eth_rx_burst`, `rte_eth_tx_burst`, `rte_pktmbuf_alloc`, …) are reached through
//! C wrappers bindgen generates (`wrap_static_fns`) and build.rs compiles.
//!
//! Everything here is `unsafe` and unchecked; the safe layer is `px-dataplane`'s `nic::dpdk`.

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The DPDK release this crate was built against, as pkg-config reported it.
pub const BUILT_AGAINST: &str = env!("PX_DPDK_VERSION");
