//! Generates the bindings from the DPDK that pkg-config finds (libdpdk ≥ 22.11), so the
//! crate follows the system's DPDK as it moves on instead of pinning one release.
//! bindgen writes C wrappers for the static inline fast-path functions (rx/tx burst,
//! mbuf alloc/free: `wrap_static_fns`), compiled here with DPDK's own flags.

use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: &str = "22.11";

/// Functions the backend calls (regexes); everything they need comes along.
const FUNCTIONS: &[&str] = &[
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_strerror",
    "rte_version",
    "rte_thread_register",
    "rte_thread_unregister",
    "rte_lcore_id",
    "rte_socket_id",
    "rte_eth_dev_count_avail",
    "rte_eth_find_next",
    "rte_eth_dev_get_port_by_name",
    "rte_eth_dev_get_name_by_port",
    "rte_eth_dev_info_get",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_dev_socket_id",
    "rte_eth_macaddr_get",
    "rte_eth_link_get_nowait",
    "rte_eth_stats_get",
    "rte_eth_promiscuous_enable",
    "rte_eth_dev_set_mtu",
    "rte_eth_rx_burst",
    "rte_eth_tx_burst",
    "rte_pktmbuf_pool_create",
    "rte_pktmbuf_alloc",
    "rte_pktmbuf_append",
    "rte_pktmbuf_free",
    "rte_pktmbuf_free_bulk",
    "rte_mempool_avail_count",
    "rte_mempool_in_use_count",
    "rte_mempool_free",
    "px_rte_errno",
];

fn main() {
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    let lib = match pkg_config::Config::new().atleast_version(MIN_VERSION).probe("libdpdk") {
        Ok(lib) => lib,
        Err(e) => panic!(
            "\n\npx-appliance's `dpdk` feature builds against the system's DPDK (>= {MIN_VERSION}), found through \
             pkg-config (libdpdk.pc), and it is not there.\nOn Debian/Ubuntu: apt-get install libdpdk-dev libclang-dev \
             pkg-config\n(or build without --features dpdk; AF_XDP needs no DPDK).\npkg-config said: {e}\n\n"
        ),
    };
    // DPDK's flags (-include rte_config.h, -march=..., include dirs) for clang and cc alike.
    let cflags = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .unwrap_or_default();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let src = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("src");
    let header = src.join("wrapper.h");
    let mut b = bindgen::Builder::default()
        .header(header.to_str().unwrap())
        .clang_args(&cflags)
        .wrap_static_fns(true)
        .wrap_static_fns_path(out.join("static_fns"))
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false);
    b = b.allowlist_var("RTE_MAX_ETHPORTS");
    for f in FUNCTIONS {
        b = b.allowlist_function(f);
    }
    let bindings = b.generate().unwrap_or_else(|e| {
        panic!("bindgen could not read DPDK's headers ({e}); it needs libclang: apt-get install libclang-dev")
    });
    bindings.write_to_file(out.join("bindings.rs")).expect("writing bindings.rs");
    let mut cc = cc::Build::new();
    cc.file(out.join("static_fns.c")).file(src.join("shim.c")).include(&src).warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    for p in &lib.include_paths {
        cc.include(p);
    }
    cc.compile("px_dpdk_shim");
    println!("cargo:rustc-env=PX_DPDK_VERSION={}", lib.version);
}
