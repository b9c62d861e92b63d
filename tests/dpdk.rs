//! The DPDK backend's own cases: each precondition fails with a one-line error naming
//! the fix. (Serving — ARP/ICMP, IPv6, HTTP clients, byte-exact transfers under faults,
//! 10k connections, SIGTERM — is tests/af_xdp.rs run with PX_TEST_BACKEND=dpdk.)
//! Without the `dpdk` feature only the first test runs: the binary says it has no DPDK.

mod common;

use std::process::Command;

use common::BIN;

/// Runs px-appliance with `args` inside px-app (or here, if `netns` is false); expects
/// a failed start and returns stderr.
fn start_error(netns: bool, args: &[&str]) -> String {
    let mut cmd = if netns {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", "px-app", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let out = cmd.args(["--backend", "dpdk", "--ip", "10.99.0.1/24", "--admin", ""]).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started when it should not have: {err}");
    err
}

/// The line px-appliance ends with (`px-appliance: error: ...`).
fn error_line(err: &str) -> &str {
    err.lines().find(|l| l.starts_with("px-appliance: error:")).unwrap_or_else(|| panic!("no error line in: {err}"))
}

#[cfg(not(feature = "dpdk"))]
#[test]
fn a_binary_without_the_feature_says_how_to_build_one() {
    let e = start_error(false, &[]);
    assert!(error_line(&e).contains("built without DPDK") && e.contains("--features dpdk"), "{e}");
}

#[cfg(feature = "dpdk")]
mod with_dpdk {
    use super::*;
    use std::path::PathBuf;
    use std::sync::{Mutex, MutexGuard};

    static TESTBED: Mutex<()> = Mutex::new(());

    fn testbed(queues: u32) -> Option<MutexGuard<'static, ()>> {
        let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
        if uid.trim() != "0" {
            assert!(std::env::var_os("CI").is_none(), "the DPDK tests need root, and CI runs as root");
            eprintln!("SKIPPED: DPDK tests need root");
            return None;
        }
        let guard = TESTBED.lock().unwrap_or_else(|e| e.into_inner());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh");
        assert!(Command::new(script).args(["up", "--queues", &queues.to_string()]).status().unwrap().success());
        Some(guard)
    }

    fn vdev(qpairs: u32) -> String {
        format!("--vdev net_af_packet0,iface=px-app0,qpairs={qpairs}")
    }

    fn config(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("px-dpdk-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn each_precondition_fails_in_one_line_naming_the_fix() {
        let Some(_tb) = testbed(1) else { return };
        // More queues than the port has.
        let e = start_error(true, &["--queues", "2", "--dpdk-args", &vdev(1)]);
        let line = error_line(&e);
        assert!(
            line.contains("--queues 2") && line.contains("net_af_packet0 has 1") && line.contains("qpairs=2"),
            "{e}"
        );
        // A port that is not there, named.
        let cfg = config("port", "[dpdk]\nport = \"net_nope0\"\n");
        let e = start_error(true, &["--dpdk-args", &vdev(1), "--config", cfg.to_str().unwrap()]);
        let line = error_line(&e);
        assert!(line.contains("\"net_nope0\"") && line.contains("net_af_packet0"), "{e}");
        // No port at all.
        let e = start_error(true, &["--dpdk-args", "--no-pci"]);
        let line = error_line(&e);
        assert!(line.contains("no port") && line.contains("--vdev"), "{e}");
        // Hugepages required and short: more mbufs than the reserved pages hold.
        let free_mib: u64 = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
            * 2;
        let mbufs = (free_mib + 64) * 1024 * 1024 / 2300 + 4096;
        let cfg = config("huge", &format!("[dpdk]\nhugepages = \"require\"\nmbufs_per_queue = {mbufs}\n"));
        let e = start_error(true, &["--dpdk-args", &vdev(1), "--config", cfg.to_str().unwrap()]);
        let line = error_line(&e);
        assert!(line.contains("hugepages") && line.contains("scripts/hugepages.sh"), "{e}");
        // A device EAL cannot attach.
        let e = start_error(true, &["--dpdk-args", "--vdev net_af_packet0,iface=nope0"]);
        let line = error_line(&e);
        assert!(line.contains("attached none") && line.contains("no interface nope0"), "{e}");
        // A bad key, named.
        let cfg = config("key", "[dpdk]\nrx_burst = 0\n");
        let e = start_error(true, &["--config", cfg.to_str().unwrap()]);
        assert!(error_line(&e).contains("dpdk.rx_burst"), "{e}");
    }

    #[test]
    fn check_reports_the_dpdk_backend_and_a_short_qpairs() {
        let Some(_tb) = testbed(2) else { return };
        let run = |extra: &[&str]| {
            let out = Command::new("ip")
                .args(["netns", "exec", "px-app", BIN, "check", "--backend", "dpdk", "--ip", "10.99.0.1/24"])
                .args(extra)
                .output()
                .unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let (ok, text) = run(&["--queues", "2", "--dpdk-args", &vdev(2)]);
        assert!(ok && text.contains("built against DPDK 2") && text.contains("net_af_packet0"), "{text}");
        let (ok, text) = run(&["--queues", "2", "--dpdk-args", &vdev(1)]);
        assert!(!ok && text.contains("qpairs=1 but --queues 2"), "{text}");
    }
}
