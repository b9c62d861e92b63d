//! AF_XDP on the veth testbed (root; CI is root): ARP and ICMP answered from userspace,
//! counters, pcap, generic and native attach, clean detach after kill -9, and one-line
//! errors for every precondition.
//!
//! The packet-path tests (ARP/ICMP, IPv6, HTTP clients, byte-exact transfers under
//! faults, 10k connections, SIGTERM) also run on the DPDK backend:
//! `PX_TEST_BACKEND=dpdk cargo test -p px-apps --features dpdk --test af_xdp -- NAMES`
//! (scripts/test.sh names them; DPDK's net_af_packet port on px-app0). A test that
//! is about AF_XDP itself fails when asked to run on DPDK rather than pass unrun.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::BIN;

static TESTBED: Mutex<()> = Mutex::new(());

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name)
}

/// Takes the testbed for this test; None (skip) only outside CI when not root.
fn testbed(queues: u32) -> Option<MutexGuard<'static, ()>> {
    // Root check through `id -u` (no unsafe in tests).
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() != "0" {
        assert!(
            std::env::var_os("CI").is_none(),
            "the AF_XDP tests need root, and CI runs as root: run .ci/run as root"
        );
        eprintln!("SKIPPED: AF_XDP tests need root");
        return None;
    }
    let guard = TESTBED.lock().unwrap_or_else(|e| e.into_inner());
    let st = Command::new(script("testbed.sh")).args(["up", "--queues", &queues.to_string()]).status().unwrap();
    assert!(st.success(), "testbed.sh up");
    Some(guard)
}

/// The packet backend under test: `af-xdp` unless PX_TEST_BACKEND says `dpdk`.
fn dpdk() -> bool {
    match std::env::var("PX_TEST_BACKEND").as_deref() {
        Ok("dpdk") => true,
        Ok("af-xdp") | Err(_) => false,
        Ok(other) => panic!("PX_TEST_BACKEND={other}: af-xdp or dpdk"),
    }
}

/// For tests about AF_XDP itself (its program, sockets, capabilities).
fn af_xdp_only() {
    assert!(!dpdk(), "this test is about AF_XDP itself: run it without PX_TEST_BACKEND=dpdk");
}

/// The config section of the backend under test (`af_xdp` or `dpdk`), for fault keys.
fn section() -> &'static str {
    if dpdk() {
        "dpdk"
    } else {
        "af_xdp"
    }
}

/// Arguments that bring the backend under test up on px-app0 as 10.99.0.1, with the
/// queue count `extra` asks for (DPDK's af_packet port gets as many queue pairs).
fn backend_args(extra: &[&str]) -> Vec<String> {
    let queues = extra.iter().position(|a| *a == "--queues").map_or("1", |i| extra[i + 1]);
    let mut a: Vec<String> = if dpdk() {
        vec![
            "--backend".into(),
            "dpdk".into(),
            "--dpdk-args".into(),
            // 4,096 ring frames per queue rather than the driver's 512: the tests' bursts
            // (1,000 concurrent 64 kB upstream fetches) overflow 512 on a loaded machine,
            // as AF_XDP's 2,048-slot ring does (that test raises it too).
            format!("--vdev net_af_packet0,iface=px-app0,qpairs={queues},framecnt=4096"),
        ]
    } else {
        vec!["--backend".into(), "af-xdp".into(), "--iface".into(), "px-app0".into()]
    };
    a.extend(["--ip".into(), "10.99.0.1/24".into()]);
    a
}

fn in_client(args: &[&str]) -> std::process::Output {
    let out = Command::new("ip").args(["netns", "exec", "px-client"]).args(args).output().unwrap();
    // `ip netns exec` says so when the program is not there: name the fix, not a
    // mismatch further down.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !(err.contains("exec of") && err.contains("failed")),
        "the client tool {:?} is missing: scripts/install-test-deps.sh installs it ({})",
        args[0],
        err.trim()
    );
    out
}

struct Appliance {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Appliance {
    fn start(extra: &[&str]) -> Appliance {
        Appliance::start_under(&[], BIN, extra)
    }

    /// As [`start`](Self::start), with `bin` run under `wrapper` inside px-app.
    fn start_under(wrapper: &[&str], bin: &str, extra: &[&str]) -> Appliance {
        let mut child = Command::new("ip")
            .args(["netns", "exec", "px-app"])
            .args(wrapper)
            .arg(bin)
            .args(backend_args(extra))
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (etx, erx) = mpsc::channel();
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            let _ = etx.send(s);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => assert!(
                line.contains("listening on http://10.99.0.1:8080")
                    && line.contains(if dpdk() { "(dpdk up on net_af_packet0" } else { "(af-xdp up on px-app0" }),
                "{line}"
            ),
            Err(_) => {
                let _ = child.kill();
                panic!("no readiness line; stderr: {}", erx.recv_timeout(Duration::from_secs(5)).unwrap_or_default());
            }
        }
        Appliance { child, stderr: erx }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// SIGTERM; asserts exit 0 within 5 s; returns stderr (with the per-queue counters).
    fn stop(mut self) -> String {
        assert!(Command::new("kill").args(["-TERM", &self.pid()]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let err = self.stderr.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                assert!(st.success(), "exit {st}: {err}");
                if dpdk() {
                    assert!(err.contains("none leaked"), "every mbuf back in DPDK's pool at exit: {err}");
                }
                return err;
            }
            assert!(Instant::now() < deadline, "did not exit within 5 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of `key=N` over all queue report lines.
fn counter(report: &str, key: &str) -> u64 {
    let pat = format!(" {key}=");
    report
        .lines()
        .filter(|l| l.contains("queue ") && l.contains(&pat))
        .map(|l| l.split(&pat).nth(1).unwrap().split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum()
}

fn ping(count: u32) -> (u32, String) {
    let out = in_client(&["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2", "10.99.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let received = text
        .lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (received, text)
}

fn app_mac() -> String {
    let out =
        Command::new("ip").args(["netns", "exec", "px-app", "cat", "/sys/class/net/px-app0/address"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn xdp_attached() -> Option<String> {
    let out = Command::new("ip").args(["-n", "px-app", "link", "show", "px-app0"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().find(|w| w.starts_with("xdp")).map(str::to_string)
}

#[test]
fn ping_and_arp_answered_from_userspace_with_counters() {
    let Some(_tb) = testbed(2) else { return };
    in_client(&["ip", "neigh", "flush", "dev", "px-client0"]);
    let app = Appliance::start(&["--queues", "2"]);
    let (got, text) = ping(3);
    assert_eq!(got, 3, "{text}");
    let neigh = String::from_utf8(in_client(&["ip", "neigh", "show", "10.99.0.1"]).stdout).unwrap();
    assert!(neigh.contains(&app_mac()), "client learned our MAC by ARP: {neigh}");
    std::thread::sleep(Duration::from_millis(300)); // idle, so the loops sleep in poll(2)
    assert_eq!(xdp_attached().as_deref(), if dpdk() { None } else { Some("xdp") });
    let report = app.stop();
    assert_eq!(xdp_attached(), None, "a clean exit leaves no XDP program on the interface");
    if dpdk() {
        assert!(report.contains("none leaked"), "every mbuf back in the pool: {report}");
    }
    assert!(counter(&report, "icmp_echo_replies") >= 3, "{report}");
    assert!(counter(&report, "arp_replies_sent") >= 1, "{report}");
    assert!(counter(&report, "arp_learned") >= 1, "{report}");
    assert!(counter(&report, "rx_packets") >= 4 && counter(&report, "tx_packets") >= 4, "{report}");
    assert!(counter(&report, "sleeps") >= 2, "idle loops sleep: {report}");
    assert_eq!(report.lines().filter(|l| l.contains(" icmp_echo_replies=")).count(), 2, "one report per queue");
}

#[test]
fn next_hop_is_resolved_before_replying() {
    let Some(_tb) = testbed(2) else { return };
    // The client already knows us (a first ping), the fresh appliance does not know it.
    let first = Appliance::start(&["--queues", "2"]);
    assert_eq!(ping(1).0, 1);
    first.stop();
    let app = Appliance::start(&["--queues", "2"]);
    let (got, text) = ping(3);
    assert_eq!(got, 3, "{text}");
    let report = app.stop();
    assert!(counter(&report, "arp_requests_sent") >= 1, "asked ARP for 10.99.0.2 first: {report}");
    assert_eq!(counter(&report, "drop_arp_unresolved"), 0, "{report}");
}

#[test]
fn generic_mode_and_pcap() {
    af_xdp_only();
    let Some(_tb) = testbed(2) else { return };
    let dir = std::env::temp_dir().join(format!("px-xdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("generic.toml");
    std::fs::write(&cfg, "[af_xdp]\nattach_mode = \"generic\"\nbind_mode = \"copy\"\n").unwrap();
    let pcap = dir.join("frames.pcap");
    let app = Appliance::start(&["--queues", "2", "--config", cfg.to_str().unwrap(), "--pcap", pcap.to_str().unwrap()]);
    assert_eq!(xdp_attached().as_deref(), Some("xdpgeneric"));
    let (got, text) = ping(2);
    assert_eq!(got, 2, "{text}");
    app.stop();
    let out = Command::new("tcpdump").args(["-nr", pcap.to_str().unwrap()]).output().unwrap();
    let dump = String::from_utf8_lossy(&out.stdout);
    assert!(dump.contains("ICMP echo request") && dump.contains("ICMP echo reply"), "{dump}");
}

#[test]
fn kill_9_leaves_no_xdp_program() {
    af_xdp_only();
    let Some(_tb) = testbed(2) else { return };
    let mut app = Appliance::start(&["--queues", "2"]);
    assert_eq!(xdp_attached().as_deref(), Some("xdp"), "native mode on veth");
    assert!(Command::new("kill").args(["-KILL", &app.pid()]).status().unwrap().success());
    let _ = app.child.wait();
    let deadline = Instant::now() + Duration::from_secs(3);
    while xdp_attached().is_some() {
        assert!(Instant::now() < deadline, "XDP program still attached after kill -9");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The kernel owns the interface again: with an address, it answers ping itself.
    Command::new("ip").args(["-n", "px-app", "addr", "add", "10.99.0.1/24", "dev", "px-app0"]).status().unwrap();
    let (got, _) = ping(1);
    Command::new("ip").args(["-n", "px-app", "addr", "del", "10.99.0.1/24", "dev", "px-app0"]).status().unwrap();
    assert_eq!(got, 1);
}

#[test]
fn bad_checksums_are_counted_and_dropped() {
    let Some(_tb) = testbed(1) else { return };
    let app = Appliance::start(&["--queues", "1"]);
    assert_eq!(ping(1).0, 1);
    let mac = app_mac();
    // A raw frame from the client with a broken IPv4 header checksum, then one with a
    // broken ICMP checksum.
    let script = format!(
        r#"
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("px-client0", 0))
dst = bytes.fromhex("{mac}".replace(":", ""))
src = s.getsockname()[4]
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"abcdefgh"
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
def frame(ip_ok, icmp_ok):
    body = icmp if icmp_ok else icmp[:-1] + b"X"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, 1, 0,
                     socket.inet_aton("10.99.0.2"), socket.inet_aton("10.99.0.1"))
    c = csum(ip) if ip_ok else (csum(ip) ^ 0x5555)
    ip = ip[:10] + struct.pack("!H", c) + ip[12:]
    return dst + src + b"\x08\x00" + ip + body
s.send(frame(False, True))
s.send(frame(True, False))
s.send(frame(True, True))
"#
    );
    let out = in_client(&["python3", "-c", &script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = app.stop();
    assert_eq!(counter(&report, "drop_bad_checksum"), 2, "{report}");
    assert!(counter(&report, "icmp_echo_replies") >= 2, "the good frame is answered: {report}");
}

fn start_error(args: &[&str]) -> String {
    let out =
        Command::new("ip").args(["netns", "exec", "px-app", BIN, "--backend", "af-xdp"]).args(args).output().unwrap();
    assert!(!out.status.success(), "should fail: {args:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn clear_one_line_errors() {
    af_xdp_only();
    let Some(_tb) = testbed(2) else { return };
    let e = start_error(&["--iface", "nope0", "--ip", "10.99.0.1/24"]);
    assert!(e.contains("no network interface \"nope0\"") && e.contains("ip link"), "{e}");
    let e = start_error(&["--iface", "px-app0", "--ip", "10.99.0.1/24", "--queues", "4"]);
    assert!(e.contains("has 2 RX queue(s)") && e.contains("ethtool -L px-app0 combined 4"), "{e}");
    let e = start_error(&["--iface", "px-app0"]);
    assert!(e.contains("af_xdp.ip"), "{e}");
    let e = start_error(&["--ip", "10.99.0.1/24"]);
    assert!(e.contains("af_xdp.iface"), "{e}");
    let dir = std::env::temp_dir().join(format!("px-xdp-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("huge.toml");
    std::fs::write(&cfg, "[af_xdp]\nhugepages = \"require\"\nframes_per_queue = 4194304\n").unwrap();
    let e = start_error(&["--iface", "px-app0", "--ip", "10.99.0.1/24", "--config", cfg.to_str().unwrap()]);
    assert!(e.contains("hugepages required") && e.contains("nr_hugepages"), "{e}");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "--backend",
            "af-xdp",
            "--iface",
            "lo",
            "--ip",
            "10.0.0.1/8",
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("lacks CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF"), "{e}");
}

#[test]
fn a_queue_taken_by_a_running_appliance_is_refused_and_free_again_at_once_after_a_kill() {
    af_xdp_only();
    let Some(_tb) = testbed(2) else { return };
    let first = Appliance::start(&["--queues", "2", "--admin", ""]);
    // Retried for 2 s (a dead owner's queue is released late), then refused in one line.
    let t0 = Instant::now();
    let e = start_error(&["--iface", "px-app0", "--ip", "10.99.0.1/24", "--queues", "2", "--admin", ""]);
    assert!(e.contains("already bound by another AF_XDP socket"), "{e}");
    assert!(t0.elapsed() >= Duration::from_secs(2), "refused after {:?}, before the retries", t0.elapsed());
    // SIGKILL the owner: a new appliance gets the queues (the kernel's deferred release
    // of the old sockets is waited out by the bind's retries).
    assert!(Command::new("kill").args(["-KILL", &first.pid()]).status().unwrap().success());
    let mut first = first;
    let _ = first.child.wait();
    let second = Appliance::start(&["--queues", "2", "--admin", ""]);
    second.stop();
}

// ---- HTTP over AF_XDP through our TCP engine ---------------------------------------------

fn sha256_of_pattern(n: usize) -> String {
    let out = Command::new("python3")
        .args(["-c", &format!("import hashlib;print(hashlib.sha256(bytes(i%251 for i in range({n}))).hexdigest())")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn curl_sha256(path: &str) -> String {
    let script = format!("set -o pipefail; curl -sS --max-time 300 http://10.99.0.1:8080{path} | sha256sum");
    let out = in_client(&["bash", "-c", &script]);
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
}

/// curl over IPv6 to the appliance's fd99::1; (status, stdout).
fn curl6(args: &[&str], path: &str) -> (bool, Vec<u8>) {
    let url = format!("http://[fd99::1]:8080{path}");
    let mut a = vec!["curl", "-6", "-sS", "--max-time", "60"];
    a.extend_from_slice(args);
    a.push(&url);
    let out = in_client(&a);
    (out.status.success(), out.stdout)
}

#[test]
fn ipv6_dual_stack_over_af_xdp_ping_routes_wrk_and_a_transfer_under_loss() {
    let Some(_tb) = testbed(2) else { return };
    let app = Appliance::start(&["--queues", "2", "--ip", "fd99::1/64", "--apps", "tfb,bytes,demo"]);
    // Neighbour discovery and ICMPv6 echo from userspace: the client forgets us, so it
    // must solicit and we must advertise.
    in_client(&["ip", "-6", "neigh", "flush", "dev", "px-client0"]);
    let out = in_client(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "fd99::1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("3 received"), "ping -6: {text}");
    // Every kind of route over IPv6, and IPv4 alongside.
    let (ok, body) = curl6(&["-i"], "/plaintext");
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(ok && text.starts_with("HTTP/1.1 200 OK") && text.ends_with("Hello, World!"), "{text}");
    assert_eq!(curl6(&[], "/json").1, br#"{"message":"Hello, World!"}"#);
    assert_eq!(curl6(&[], "/demo/sleep/50").1, b"slept 50 ms\n", "an async handler");
    let (ok, body) = curl6(&["--data-binary", "posted over IPv6"], "/demo/echo");
    assert!(ok && body == b"posted over IPv6", "{}", String::from_utf8_lossy(&body));
    let v4 = in_client(&["curl", "-s", "--max-time", "10", "http://10.99.0.1:8080/json"]);
    assert_eq!(v4.stdout, br#"{"message":"Hello, World!"}"#, "IPv4 at the same time");
    let sum6 = |n: usize| {
        let script =
            format!("set -o pipefail; curl -6 -sS --max-time 300 'http://[fd99::1]:8080/bytes/{n}' | sha256sum");
        let out = in_client(&["bash", "-c", &script]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
    };
    for n in [100_000usize, 16 << 20] {
        assert_eq!(sum6(n), sha256_of_pattern(n), "/bytes/{n} over IPv6");
    }
    // wrk over IPv6: keep-alive load, every answer a 200.
    let out = in_client(&["wrk", "-t1", "-c16", "-d2s", "http://[fd99::1]:8080/plaintext"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && !text.contains("Non-2xx") && !text.contains("Socket errors"), "{text}");
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in").map(|(n, _)| n.trim().parse().unwrap_or(0)))
        .unwrap_or(0);
    assert!(requests > 1000, "{text}");
    // Byte-exact under 2 % loss both ways (nftables in px-client, IPv6 packets only).
    let rules = "table ip6 pxloss6 {
  chain rx { type filter hook prerouting priority -300; iifname \"px-client0\" meta l4proto tcp numgen random mod 100 < 2 drop; }
  chain tx { type filter hook postrouting priority 300; oifname \"px-client0\" meta l4proto tcp numgen random mod 100 < 2 drop; }
}";
    let st = in_client(&["bash", "-c", &format!("nft -f - <<'EOF'\n{rules}\nEOF")]);
    assert!(st.status.success(), "nft: {}", String::from_utf8_lossy(&st.stderr));
    let lossy = sum6(4 << 20);
    in_client(&["nft", "delete", "table", "ip6", "pxloss6"]);
    assert_eq!(lossy, sha256_of_pattern(4 << 20), "4 MiB over IPv6 with 2 % loss");
    let report = app.stop();
    assert!(counter(&report, "nd_adverts_sent") >= 1, "{report}");
    assert!(counter(&report, "icmp6_echo_replies") >= 3, "{report}");
    assert!(counter(&report, "tcp_sack_retransmits") + counter(&report, "tcp_rto_retransmits") > 0, "{report}");
}

/// Client TCP's count of segments that failed their checksum.
fn client_csum_errors() -> u64 {
    let out = in_client(&["nstat", "-az", "TcpInCsumErrors"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("TcpInCsumErrors"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// TCP checksums left partial for the kernel (AF_XDP TX metadata, as Linux's own TCP
/// leaves them for the device) come out right. On veth with checksum offload on, a
/// partial checksum crosses to the peer unchecked, which would prove nothing: with it
/// off on px-app0, the kernel finishes each one in software and the client's TCP checks
/// every segment (a wrong one is dropped, the transfer stalls and curl times out).
#[test]
fn tcp_checksums_the_kernel_finishes_verify_at_the_client() {
    af_xdp_only();
    let Some(_tb) = testbed(1) else { return };
    let ethtool = |on: &str| {
        let st = Command::new("ip")
            .args(["netns", "exec", "px-app", "ethtool", "-K", "px-app0", "tx", on])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "ethtool -K px-app0 tx {on}");
    };
    ethtool("off");
    let fetch = |n: usize| {
        let script = format!("set -o pipefail; curl -sS --max-time 30 http://10.99.0.1:8080/bytes/{n} | sha256sum");
        let out = in_client(&["bash", "-c", &script]);
        assert!(out.status.success(), "curl /bytes/{n}: {}", String::from_utf8_lossy(&out.stderr));
        let sum = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string();
        assert_eq!(sum, sha256_of_pattern(n), "/bytes/{n}");
    };
    let errors_before = client_csum_errors();
    let app = Appliance::start(&["--apps", "bytes"]);
    for n in [1usize << 20, 3_000_001] {
        fetch(n);
    }
    let report = app.stop();
    ethtool("on");
    assert_eq!(client_csum_errors(), errors_before, "segments with a bad checksum reached the client");
    // Every data segment of both bodies asked the kernel for its checksum.
    let segments = ((1usize << 20) + 3_000_001) as u64 / 1448;
    assert!(counter(&report, "tx_csum_offloaded") >= segments, "{report}");
    // `software` computes them here instead, and nothing asks the kernel.
    let cfg = std::env::temp_dir().join(format!("px-sw-csum-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[af_xdp]\ntx_checksum = \"software\"\n").unwrap();
    let app = Appliance::start(&["--apps", "bytes", "--config", cfg.to_str().unwrap()]);
    fetch(1 << 20);
    let report = app.stop();
    let _ = std::fs::remove_file(&cfg);
    assert_eq!(counter(&report, "tx_csum_offloaded"), 0, "{report}");
}

/// Slow clients and closing errors through our TCP engine: a head trickling in one byte
/// every 50 ms gets 408 at `header_timeout_ms`, a stalled body at `body_timeout_ms`, and a
/// closing error behind a 4 MiB response, with the client still sending, loses nothing
/// of that response (RFC 9112 §9.6: no reset).
#[test]
fn slow_clients_and_closing_errors_over_af_xdp() {
    let Some(_tb) = testbed(1) else { return };
    let cfg = std::env::temp_dir().join(format!("px-slow-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[http]\nheader_timeout_ms = 500\nbody_timeout_ms = 800\n").unwrap();
    let app = Appliance::start(&["--apps", "tfb,bytes,demo", "--config", cfg.to_str().unwrap()]);
    let script = r#"
import socket, time, threading
A = ("10.99.0.1", 8080)
# A head one byte every 50 ms: 408 long before it is complete.
s = socket.create_connection(A, timeout=10)
head = b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 200 + b"\r\n\r\n"
s.setblocking(False)
got, sent = b"", 0
while sent < len(head):
    s.send(head[sent:sent + 1]); sent += 1
    time.sleep(0.05)
    try:
        got += s.recv(4096)
        if got: break
    except BlockingIOError:
        pass
assert sent < len(head), "the whole head trickled in"
assert got.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in got, got
# A body: 10 of 100 bytes, then nothing.
s = socket.create_connection(A, timeout=10)
s.sendall(b"POST /demo/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
r = b""
while b"\r\n\r\n" not in r:
    r += s.recv(4096)
assert r.startswith(b"HTTP/1.1 408 "), r
# A closing error (bare LF: 400) behind a 4 MiB response, the client still sending.
n = 4 << 20
s = socket.create_connection(A, timeout=20)
data = b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n + b"GET /plaintext HTTP/1.1\nHost: t\n\n" + b"j" * (256 << 10)
t = threading.Thread(target=lambda: s.sendall(data)); t.start()
buf = b""
def response():
    global buf
    while b"\r\n\r\n" not in buf:
        d = s.recv(1 << 16); assert d, "EOF mid-head"; buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    hdrs = {l.split(b":", 1)[0].lower(): l.split(b":", 1)[1].strip() for l in lines[1:]}
    ln = int(hdrs.get(b"content-length", b"0"))
    while len(buf) < ln:
        d = s.recv(1 << 16); assert d, "EOF mid-body"; buf += d
    body, buf = buf[:ln], buf[ln:]
    return int(lines[0].split()[1]), hdrs, body
st, h, body = response()
assert st == 200 and body == bytes(i % 251 for i in range(n)), (st, len(body))
st, h, body = response()
assert st == 400 and h.get(b"connection") == b"close", (st, h)
assert s.recv(1024) == b"", "an orderly end"
t.join()
print("ok")
"#;
    let out = in_client(&["python3", "-c", script]);
    let report = app.stop();
    let _ = std::fs::remove_file(&cfg);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(counter(&report, "http_head_timeouts"), 1, "{report}");
    assert_eq!(counter(&report, "http_body_timeouts"), 1, "{report}");
    assert_eq!(counter(&report, "tcp_reset"), 0, "{report}");
}

#[test]
fn http_over_af_xdp_with_real_clients() {
    let Some(_tb) = testbed(2) else { return };
    // Busy polling (on by default) sets the interface's interrupt deferral only while
    // frames come close together (under load), and puts the old values back at exit.
    let deferral = || {
        ["napi_defer_hard_irqs", "gro_flush_timeout"].map(|f| {
            let out = Command::new("ip")
                .args(["netns", "exec", "px-app", "cat", &format!("/sys/class/net/px-app0/{f}")])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
    };
    let before = deferral();
    let app = Appliance::start(&["--queues", "2", "--apps", "tfb,bytes,demo"]);
    assert_eq!(deferral(), before, "no deferral before any load");
    let out = in_client(&["curl", "-si", "--max-time", "10", "http://10.99.0.1:8080/plaintext"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.contains("Server: px-appliance") && text.ends_with("Hello, World!"),
        "{text}"
    );
    let out = in_client(&["curl", "-s", "--max-time", "10", "http://10.99.0.1:8080/json"]);
    assert_eq!(out.stdout, br#"{"message":"Hello, World!"}"#);
    for n in [1usize << 20, 16 << 20] {
        assert_eq!(curl_sha256(&format!("/bytes/{n}")), sha256_of_pattern(n), "/bytes/{n}");
    }
    // Python's http.client: keep-alive (per-connection state counts up) and chunked POST.
    let script = r#"
import http.client
c = http.client.HTTPConnection("10.99.0.1", 8080, timeout=10)
for i in range(1, 51):
    c.request("GET", "/demo/visits")
    assert c.getresponse().read() == f"visit {i} on this connection\n".encode()
c.request("POST", "/demo/echo", body=iter([b"chunk-a ", b"chunk-b"]), encode_chunked=True)
assert c.getresponse().read() == b"chunk-a chunk-b"
c.request("GET", "/demo/counter")
assert b"count" in c.getresponse().read()
print("ok")
"#;
    let out = in_client(&["python3", "-c", script]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // A body the handler built in its arena is sent by reference, gathered straight
    // into TX frames; a large request body (over the receive window) reaches a handler.
    for n in [100_000usize, 512 << 10] {
        assert_eq!(curl_sha256(&format!("/demo/pattern/{n}")), sha256_of_pattern(n), "/demo/pattern/{n}");
    }
    let script = r#"
import http.client, hashlib, random
body = random.Random(7).randbytes(900_000)
c = http.client.HTTPConnection("10.99.0.1", 8080, timeout=10)
for _ in range(3):
    c.request("POST", "/demo/echo", body=body)
    r = c.getresponse()
    assert r.status == 200 and hashlib.sha256(r.read()).digest() == hashlib.sha256(body).digest()
print("ok")
"#;
    let out = in_client(&["python3", "-c", script]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = in_client(&["ab", "-q", "-k", "-n", "5000", "-c", "16", "-s", "10", "http://10.99.0.1:8080/json"]);
    let ab = String::from_utf8_lossy(&out.stdout);
    assert!(ab.contains("Complete requests:      5000") && ab.contains("Failed requests:        0"), "{ab}");
    assert!(ab.contains("Keep-Alive requests:    5000"), "{ab}");
    let mut wrk = Command::new("ip")
        .args(["netns", "exec", "px-client", "wrk", "-t", "2", "-c", "256", "-d", "10s", "--timeout", "5s"])
        .arg("http://10.99.0.1:8080/plaintext")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While wrk runs, frames come close together: the loop busy polls, with the
    // interface's deferral on. Looked at until it shows or wrk ends.
    let mut seen = deferral();
    while seen != ["2", "20000"] && wrk.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
        seen = deferral();
    }
    let out = wrk.wait_with_output().unwrap();
    let wrk = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !wrk.contains("Socket errors") && !wrk.contains("Non-2xx"), "{wrk}");
    let report = app.stop();
    assert_eq!(deferral(), before, "the interface's deferral settings put back at exit");
    if !dpdk() {
        assert_eq!(seen, ["2", "20000"], "af_xdp.busy_poll's interface settings under load");
        // wrk's 256 connections kept frames close together: the loop busy polled.
        assert!(counter(&report, "busy_polls") > 0, "{report}");
        assert!(counter(&report, "busy_poll_switches") > 0, "{report}");
    }
    assert!(counter(&report, "tcp_established") >= 256 + 16 + 4, "{report}");
    assert!(counter(&report, "http_requests") > 10_000, "{report}");
    assert_eq!(counter(&report, "http_5xx"), 0, "{report}");
    assert!(counter(&report, "http_body_bytes_by_reference") >= 100_000 + (512 << 10), "{report}");
    // Frames are built in UMEM, not copied there from a staging buffer.
    assert!(counter(&report, "tx_in_place") * 10 >= counter(&report, "tx_packets") * 9, "{report}");
    // RSS spread the flows: both queues served connections.
    let per_queue: Vec<u64> = report
        .lines()
        .filter(|l| l.contains(" tcp_established="))
        .map(|l| l.split(" tcp_established=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(per_queue.len() == 2 && per_queue.iter().all(|&n| n > 0), "both queues own flows: {per_queue:?}");
}

/// Returns true if this kernel can run `tc netem` (this machine's cannot: it is built
/// without CONFIG_NET_SCH_NETEM).
fn netem_available() -> bool {
    let ok =
        in_client(&["tc", "qdisc", "replace", "dev", "px-client0", "root", "netem", "delay", "1ms"]).status.success();
    in_client(&["tc", "qdisc", "del", "dev", "px-client0", "root"]);
    ok
}

#[test]
fn transfers_are_byte_exact_under_loss_duplication_and_reordering() {
    let Some(_tb) = testbed(2) else { return };
    let scenarios: [(&str, &str, &str); 4] = [
        ("loss 5%", "loss 5%", "drop_ppm = 50000"),
        ("duplicate 1%", "duplicate 1%", "duplicate_ppm = 10000"),
        ("reorder 25% delay 10ms", "delay 10ms reorder 25%", "delay_ms = 10\nreorder_ppm = 250000"),
        (
            "all three",
            "delay 10ms loss 5% duplicate 1% reorder 25%",
            "drop_ppm = 50000\nduplicate_ppm = 10000\ndelay_ms = 10\nreorder_ppm = 250000",
        ),
    ];
    let netem = netem_available();
    let dir = std::env::temp_dir().join(format!("px-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sums = [(1usize << 20, sha256_of_pattern(1 << 20)), (16 << 20, sha256_of_pattern(16 << 20))];
    // With netem: faults on the client's interface. Without it (this kernel): the same
    // faults on the frames reaching the appliance (direction "rx"), which is what netem
    // on px-client0 does, plus one run with faults on our own sends too.
    let mut runs: Vec<(String, String, Option<String>)> = Vec::new();
    for (name, netem_args, injector) in scenarios {
        if netem {
            runs.push((name.to_string(), String::new(), Some(netem_args.to_string())));
        } else {
            runs.push((
                name.to_string(),
                format!("[{}.faults]\nseed = 7\ndirection = \"rx\"\n{injector}\n", section()),
                None,
            ));
        }
    }
    runs.push((
        "all three, both directions".into(),
        format!("[{}.faults]\nseed = 9\ndirection = \"both\"\n{}\n", section(), scenarios[3].2),
        None,
    ));
    for (name, config, netem_args) in runs {
        let cfg = dir.join("faults.toml");
        std::fs::write(&cfg, &config).unwrap();
        if let Some(args) = &netem_args {
            let mut cmd = vec!["tc", "qdisc", "replace", "dev", "px-client0", "root", "netem"];
            cmd.extend(args.split_whitespace());
            assert!(in_client(&cmd).status.success());
        }
        let app = Appliance::start(&["--queues", "2", "--config", cfg.to_str().unwrap()]);
        for (n, sum) in &sums {
            assert_eq!(&curl_sha256(&format!("/bytes/{n}")), sum, "{name}: /bytes/{n}");
        }
        let report = app.stop();
        if netem_args.is_some() {
            in_client(&["tc", "qdisc", "del", "dev", "px-client0", "root"]);
        } else if config.contains("drop_ppm") {
            assert!(counter(&report, "injected_drops") > 0, "{name}: faults were injected: {report}");
        }
        if name.contains("both") {
            assert!(counter(&report, "tcp_rto_retransmits") + counter(&report, "tcp_fast_retransmits") > 0, "{report}");
        }
        eprintln!("{name}: ok");
    }
}

#[test]
fn ten_thousand_concurrent_keep_alive_connections_all_answered() {
    let Some(_tb) = testbed(2) else { return };
    let app = Appliance::start(&["--queues", "2"]);
    let client = script("conn-scale.py");
    let out = in_client(&["python3", client.to_str().unwrap(), "10.99.0.1", "8080", "10000"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("\"opened\": 10000") && text.contains("\"answered\": 10000"), "{text}");
    let report = app.stop();
    assert!(counter(&report, "tcp_established") >= 10_000, "{report}");
    assert!(counter(&report, "http_2xx") >= 10_000, "{report}");
}

#[test]
fn sigterm_refuses_new_connections_and_finishes_in_flight_responses() {
    let Some(_tb) = testbed(2) else { return };
    let app = Appliance::start(&["--queues", "2"]);
    // A 16 MiB response read at 8 MB/s is in flight (~2 s) when SIGTERM arrives.
    let download = Command::new("ip")
        .args(["netns", "exec", "px-client", "bash", "-c"])
        .arg("set -o pipefail; curl -sS --limit-rate 8M http://10.99.0.1:8080/bytes/16777216 | sha256sum")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&in_client(&["ss", "-tn", "state", "established", "dport", "= :8080"]).stdout)
        .contains("10.99.0.1")
    {
        assert!(Instant::now() < deadline, "download started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-TERM", &app.pid()]).status().unwrap().success());
    // New connections are refused at once (RST), not left hanging.
    let refused = in_client(&["curl", "-sS", "--max-time", "2", "http://10.99.0.1:8080/plaintext"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Couldn't connect"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let report = app.stop();
    let out = download.wait_with_output().unwrap();
    assert!(out.status.success());
    let sum = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(sum, sha256_of_pattern(16 << 20), "the in-flight response finished whole");
    assert!(counter(&report, "http_2xx") >= 1, "{report}");
}

#[test]
fn wiki_app_over_af_xdp() {
    let Some(_tb) = testbed(1) else { return };
    let (xml_path, idx) = common::wiki_fixture();
    let xml = std::fs::read(xml_path).unwrap();
    let app = Appliance::start(&["--queues", "1", "--apps", "tfb,wiki", "--wiki-dir", idx.to_str().unwrap()]);
    let base = "http://10.99.0.1:8080";
    let out = in_client(&["curl", "-sS", "--max-time", "10", &format!("{base}/offsets/Anar")]);
    let rows: Vec<(String, u64, u64)> = serde_json::from_slice(&out.stdout).unwrap();
    let (_, start, end) = rows.iter().find(|r| r.0 == "Anarchism").expect("Anarchism in /offsets/Anar").clone();
    let out = in_client(&["curl", "-sS", "--max-time", "10", &format!("{base}/wiki/Anarchism")]);
    assert!(out.stdout == xml[start as usize..=end as usize], "/wiki/Anarchism is its byte range of the dump");
    let range = format!("Range: bytes={start}-{end}");
    let out =
        in_client(&["curl", "-sS", "-D", "/dev/stderr", "--max-time", "10", "-H", &range, &format!("{base}/xml")]);
    let head = String::from_utf8_lossy(&out.stderr);
    assert!(
        head.starts_with("HTTP/1.1 206") && head.contains(&format!("Content-Range: bytes {start}-{end}/{}", xml.len())),
        "{head}"
    );
    assert!(out.stdout == xml[start as usize..=end as usize]);
    let out = in_client(&["curl", "-sS", "-I", "--max-time", "10", &format!("{base}/wiki/Anarchism")]);
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(head.contains(&format!("Content-Length: {}", end - start + 1)), "HEAD: {head}");
    let out = in_client(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("{base}/wiki/Nope_nope")]);
    assert_eq!(out.stdout, b"404");
    let report = app.stop();
    assert_eq!(counter(&report, "http_5xx"), 0, "{report}");
}

/// A process in the px-client namespace, killed when dropped.
struct ClientProc(Child);

impl Drop for ClientProc {
    fn drop(&mut self) {
        // SIGTERM, so nginx's master also stops its worker.
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// Waits until something in px-client listens on `port`.
fn client_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = in_client(&["ss", "-Hltn", "sport", &format!("= :{port}")]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "nothing listens on px-client:{port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn demo_config(name: &str, text: &str) -> String {
    common::temp_file(name, text).to_str().unwrap().to_string()
}

fn conn_scale_in_client(n: usize, path: &str, body: &std::path::Path) -> String {
    let client = script("conn-scale.py");
    let out = in_client(&[
        "python3",
        client.to_str().unwrap(),
        "10.99.0.1",
        "8080",
        &n.to_string(),
        path,
        body.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn async_handlers_and_outbound_connections_over_af_xdp() {
    let Some(_tb) = testbed(2) else { return };
    let Some(nginx_bin) = common::tool("nginx").or_else(|| Some(PathBuf::from("/usr/sbin/nginx"))) else { return };
    // nginx in px-client, reached from the appliance through our TCP engine's active open.
    let dir = common::root().join("target/test-tmp").join(format!("xdp-upstream-{}", std::process::id()));
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    // 64 kB: see the incast note at the appliance's config below.
    let blob: Vec<u8> = (0..65_536u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(www.join("blob"), &blob).unwrap();
    let conf = format!(
        "daemon off; worker_processes 1; error_log stderr error; pid {d}/nginx.pid;\n\
         events {{ worker_connections 8192; }}\n\
         http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; \
         uwsgi_temp_path {d}; scgi_temp_path {d};\n server {{ listen 10.99.0.2:9090 backlog=4096; root {w}; }} }}\n",
        d = dir.display(),
        w = www.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let _nginx = ClientProc(
        Command::new("ip")
            .args(["netns", "exec", "px-client"])
            .arg(&nginx_bin)
            .args(["-c", dir.join("nginx.conf").to_str().unwrap(), "-p", dir.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    client_listening(9090);
    // 1,000 upstream responses at once are an incast: 1,000 × nginx's initial window
    // (10 segments) overflows the RX ring of a loop that shares two cores with nginx, the
    // client and veth's softirq (measured with 200 kB bodies: 9,000–19,000 frames dropped
    // by the kernel per queue with the default 2,048-slot ring, 5–8 s; 5,000–10,000 and
    // 3.4 s with 4,096 slots; one fetch in five runs stalled past 30 s on the senders'
    // RTO backoff). The lost segments wait for the peer's retransmissions (SACK and RACK
    // are issue #12). So this appliance gets the larger ring, 64 kB bodies and long
    // limits: the test is about every byte arriving; the time is reported.
    let cfg = demo_config(
        "xdp-up.toml",
        "[demo]\nupstream = \"10.99.0.2:9090\"\nupstream_connect_timeout_ms = 10000\n[handlers]\ndeadline_ms = 30000\n\
         [af_xdp]\nring_size = 4096\nframes_per_queue = 16384\n",
    );
    let app = Appliance::start(&["--queues", "2", "--apps", "tfb,demo", "--config", &cfg]);
    let base = "http://10.99.0.1:8080";
    let out = in_client(&["curl", "-sS", "--max-time", "10", &format!("{base}/demo/upstream/blob")]);
    assert!(out.stdout == blob, "byte-exact through our TCP engine ({} bytes)", out.stdout.len());
    let out =
        in_client(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("{base}/demo/upstream/nope")]);
    assert_eq!(out.stdout, b"404", "the upstream's status is relayed");
    let text = conn_scale_in_client(1000, "/demo/upstream/blob", &www.join("blob"));
    assert!(text.contains("\"answered\": 1000") && text.contains("\"errors\": 0"), "{text}");
    eprintln!("AF_XDP: 1,000 concurrent upstream fetches of 64 kB: {text}");
    let report = app.stop();
    assert!(counter(&report, "upstream_established") >= 1002, "{report}");
    assert_eq!(counter(&report, "http_5xx"), 0, "{report}");

    // 10,000 sleeping requests at once, on an appliance with the default configuration.
    let app = Appliance::start(&["--queues", "2", "--apps", "tfb,demo"]);
    let slept = common::temp_file("xdp-slept", "slept 1000 ms\n");
    let text = conn_scale_in_client(10_000, "/demo/sleep/1000", &slept);
    assert!(text.contains("\"answered\": 10000") && text.contains("\"errors\": 0"), "{text}");
    eprintln!("AF_XDP: 10,000 concurrent /demo/sleep/1000: {text}");
    // A client that goes away mid-request: its task is cancelled.
    let gone = in_client(&[
        "python3",
        "-c",
        "import socket; s=socket.create_connection(('10.99.0.1',8080)); \
         s.sendall(b'GET /demo/sleep/3000 HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n'); s.close()",
    ]);
    assert!(gone.status.success());
    let out = in_client(&["curl", "-sS", "--max-time", "5", &format!("{base}/demo/sleep/1")]);
    assert_eq!(out.stdout, b"slept 1 ms\n");
    let report = app.stop();
    assert_eq!(counter(&report, "tasks_cancelled"), 1, "{report}");
    assert!(counter(&report, "tasks_completed") >= 10_001, "{report}");

    // Upstream down (the kernel in px-client answers RST): 502 at once.
    let cfg = demo_config("xdp-down.toml", "[demo]\nupstream = \"10.99.0.2:9091\"\n");
    let app = Appliance::start(&["--queues", "2", "--apps", "demo", "--config", &cfg]);
    let out = in_client(&["curl", "-s", "-w", " %{http_code} %{time_total}", &format!("{base}/demo/upstream/x")]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("refused") && text.contains(" 502 "), "{text}");
    eprintln!("AF_XDP upstream down: {text}");
    let report = app.stop();
    assert_eq!(counter(&report, "upstream_refused"), 1, "{report}");

    // Upstream silent (accepts, never answers): 504 at the deadline.
    let _silent = ClientProc(
        Command::new("ip")
            .args(["netns", "exec", "px-client", "python3", "-c"])
            .arg(
                "import socket, time\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('10.99.0.2', 9092)); s.listen(16)\nheld = []\nwhile True: held.append(s.accept())\n",
            )
            .spawn()
            .unwrap(),
    );
    client_listening(9092);
    let cfg = demo_config("xdp-silent.toml", "[demo]\nupstream = \"10.99.0.2:9092\"\n[handlers]\ndeadline_ms = 400\n");
    let app = Appliance::start(&["--queues", "2", "--apps", "demo", "--config", &cfg]);
    let out = in_client(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_total}",
        &format!("{base}/demo/upstream/x"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("504 "), "{text}");
    let secs: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(secs >= 0.4, "not before the deadline: {text}");
    eprintln!("AF_XDP upstream silent: {text}");
    let report = app.stop();
    assert_eq!(counter(&report, "tasks_timed_out"), 1, "{report}");
}

/// One request from px-client with curl, parsed.
fn curl_resp(path: &str) -> common::Resp {
    curl_resp_at("http://10.99.0.1:8080", path)
}

/// As [`curl_resp`], to the appliance's IPv6 address.
fn curl_resp6(path: &str) -> common::Resp {
    curl_resp_at("http://[fd99::1]:8080", path)
}

fn curl_resp_at(base: &str, path: &str) -> common::Resp {
    let out = in_client(&["curl", "-sS", "-i", "--max-time", "10", &format!("{base}{path}")]);
    assert!(out.status.success(), "curl {base}{path}: {}", String::from_utf8_lossy(&out.stderr));
    let raw = out.stdout;
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut hs);
    let httparse::Status::Complete(n) = r.parse(&raw).expect("a valid response") else { panic!("cut short") };
    common::Resp {
        status: r.code.unwrap(),
        headers: r
            .headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        body: raw[n..].to_vec(),
    }
}

fn db_sh(arg: &str) {
    assert!(Command::new(script("db.sh")).arg(arg).status().unwrap().success(), "scripts/db.sh {arg}");
}

#[test]
fn database_routes_over_af_xdp() {
    let Some(_tb) = testbed(2) else { return };
    if !common::db::available() {
        return;
    }
    db_sh("up"); // its relay on 10.99.0.2:5432 lives in the px-client namespace
                 // The pool's connections cross the veth link through our TCP engine's active open.
    let app =
        Appliance::start(&["--queues", "2", "--apps", "tfb", "--db-address", "10.99.0.2:5432", "--ip", "fd99::1/64"]);
    common::db::check_routes(&curl_resp);
    // Every database route again with the client on IPv6 (the pool stays on IPv4). The
    // first pass's /updates changed rows the world cache already held.
    common::db::check_routes_with(&curl_resp6, false);
    let report = app.stop();
    assert_eq!(counter(&report, "http_5xx"), 0, "{report}");
    assert!(report.contains("db_connects=4"), "two connections per core: {report}");

    let cfg =
        demo_config("xdp-md5.toml", "[db]\naddress = \"10.99.0.2:5432\"\nuser = \"md5user\"\npassword = \"md5pass\"\n");
    let app = Appliance::start(&["--queues", "2", "--apps", "tfb", "--config", &cfg]);
    common::db::check_statement_counts(&curl_resp);
    app.stop();
}

#[test]
fn database_outage_over_af_xdp_gives_fast_503s_and_service_resumes() {
    let Some(_tb) = testbed(2) else { return };
    if !common::db::available() {
        return;
    }
    db_sh("up");
    let cfg = demo_config(
        "xdp-outage.toml",
        "[db]\naddress = \"10.99.0.2:5432\"\nquery_timeout_ms = 1000\nreconnect_max_ms = 500\n",
    );
    let app = Appliance::start(&["--queues", "2", "--apps", "tfb", "--config", &cfg]);
    // Four keep-alive loops in px-client (curl with many URLs reuses its connection), each
    // printing every status; --max-time turns a hung request into 000.
    let script_text = "while :; do curl -s --max-time 5 -w '%{http_code}\\n' \
                       $(for i in $(seq 50); do printf -- '-o /dev/null http://10.99.0.1:8080/queries?queries=5 '; done) \
                       || echo 000; done";
    let mut loops: Vec<Child> = (0..4)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", "px-client", "sh", "-c", script_text])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    for l in &mut loops {
        let out = l.stdout.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
    }
    type Seen = [(Instant, String)];
    let mut seen: Vec<(Instant, String)> = Vec::new();
    let take_until = |seen: &mut Vec<(Instant, String)>, what: &str, limit: Duration, cond: &dyn Fn(&Seen) -> bool| {
        let end = Instant::now() + limit;
        while !cond(seen) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what} within {limit:?}");
            if let Ok(x) = rx.recv_timeout(left.min(Duration::from_millis(100))) {
                seen.push(x);
            }
        }
    };
    let count = |s: &[(Instant, String)], code: &str| s.iter().filter(|(_, c)| c == code).count();
    take_until(&mut seen, "load running", Duration::from_secs(20), &|s| count(s, "200") >= 100);
    let down_at = Instant::now();
    db_sh("stop");
    let ok_before = count(&seen, "200");
    take_until(&mut seen, "503s while the database is down", Duration::from_secs(10), &|s| count(s, "503") >= 100);
    let up_at = Instant::now();
    db_sh("up");
    take_until(&mut seen, "service resumes", Duration::from_secs(30), &|s| {
        s.iter().filter(|(t, c)| *t > up_at && c == "200").count() >= 100
    });
    for mut l in loops {
        let _ = l.kill();
        let _ = l.wait();
    }
    let codes: std::collections::BTreeMap<&str, usize> = seen.iter().fold(Default::default(), |mut m, (_, c)| {
        *m.entry(c.as_str()).or_default() += 1;
        m
    });
    let first_503 = seen.iter().find(|(_, c)| c == "503").map(|(t, _)| t.saturating_duration_since(down_at));
    let last_503 = seen.iter().rev().find(|(_, c)| c == "503").map(|(t, _)| t.saturating_duration_since(up_at));
    eprintln!("AF_XDP outage: {codes:?}; {ok_before} ok before; first 503 {first_503:?} after the stop began, last 503 {last_503:?} after the restart began");
    assert!(codes.keys().all(|c| *c == "200" || *c == "503"), "only 200 and 503, none hung (000): {codes:?}");
    common::db::wait_until_every_core_serves(&curl_resp, Duration::from_secs(30));
    common::db::check_routes(&curl_resp);
    let report = app.stop();
    assert!(counter(&report, "http_5xx") >= 100, "the 503s are counted: {report}");
}

/// A value of the systemd unit we ship (deploy/px-appliance.service).
fn unit_value(key: &str) -> String {
    let unit = std::fs::read_to_string(common::root().join("deploy/px-appliance.service")).unwrap();
    let prefix = format!("{key}=");
    unit.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {key} in the unit")).to_string()
}

/// A copy of the binary that any user may run (the build tree may be private to root).
fn public_binary() -> String {
    let dir = std::env::temp_dir().join(format!("px-public-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("px-appliance");
    std::fs::copy(BIN, &bin).unwrap();
    for p in [&dir, &bin] {
        assert!(Command::new("chmod").args(["755", p.to_str().unwrap()]).status().unwrap().success());
    }
    bin.to_string_lossy().into_owned()
}

/// `setpriv` arguments that run as `nobody` with exactly `caps` (e.g. "+net_raw,+bpf").
fn as_nobody_with(caps: &str) -> Vec<String> {
    let set = if caps.is_empty() { "-all".to_string() } else { format!("-all,{caps}") };
    ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--inh-caps={set}"), format!("--ambient-caps={set}"), format!("--bounding-set={set}")])
        .collect()
}

#[test]
fn the_units_capabilities_suffice_without_root_and_the_admin_view_shows_the_packet_path() {
    af_xdp_only();
    let Some(_tb) = testbed(2) else { return };
    // The capabilities and the memlock limit the shipped unit grants.
    let caps: Vec<String> = unit_value("AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert_eq!(unit_value("LimitMEMLOCK"), "infinity");
    let bin = public_binary();
    // The unit also lifts RLIMIT_MEMLOCK; this sandbox's root cannot (no
    // CAP_SYS_RESOURCE), so the run below relies on CAP_IPC_LOCK alone, as the unit
    // could.
    let wrapper = as_nobody_with(&caps.join(","));
    let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let app = Appliance::start_under(&w, &bin, &["--queues", "2", "--admin", "127.0.0.1:9180"]);
    let out = in_client(&["curl", "-s", "--max-time", "10", "http://10.99.0.1:8080/plaintext"]);
    assert_eq!(out.stdout, b"Hello, World!");
    // A few keep-alive requests, then the admin view from inside px-app.
    let urls: Vec<String> = (0..20).map(|_| "http://10.99.0.1:8080/json".to_string()).collect();
    let mut args = vec!["curl", "-s", "--max-time", "10", "-o", "/dev/null"];
    args.extend(urls.iter().map(String::as_str));
    assert!(in_client(&args).status.success());
    let admin = |path: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", "px-app", "curl", "-s", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:9180{path}"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let stats: serde_json::Value = serde_json::from_str(&admin("/stats")).unwrap();
    assert_eq!(stats["backend"], "af-xdp");
    assert!(stats["xdp_mode"].as_str().unwrap().contains("copy"), "{}", stats["xdp_mode"]);
    let queues = stats["queues"].as_array().unwrap();
    let sum = |f: &dyn Fn(&serde_json::Value) -> u64| queues.iter().map(f).sum::<u64>();
    assert_eq!(sum(&|q| q["counters"]["http_requests"].as_u64().unwrap()), 21);
    assert!(sum(&|q| q["counters"]["rx_packets"].as_u64().unwrap()) > 21);
    assert!(sum(&|q| q["counters"]["tcp_established"].as_u64().unwrap()) >= 2);
    for q in queues {
        let g = &q["gauges"];
        let total = g["umem_frames"].as_u64().unwrap();
        assert!(total > 0 && g["umem_frames_with_kernel"].as_u64().unwrap() <= total, "{q}");
        // Both curl connections are closed by now: TIME-WAIT or gone, none established.
        assert_eq!(q["tcp_states"]["established"], 0, "{q}");
    }
    // Every closed connection measured its RTT on this link.
    assert!(sum(&|q| q["tcp_srtt_at_close"]["count"].as_u64().unwrap()) >= 2, "{stats}");
    let metrics = admin("/metrics");
    assert!(metrics.contains("px_tcp_connections{queue=\"0\",state=\"time_wait\"}"), "{metrics}");
    assert!(metrics.contains("px_tcp_srtt_at_close_seconds_count "), "{metrics}");
    assert!(metrics.contains("px_umem_frames{queue=\"1\"}"), "{metrics}");
    // It really ran as nobody: the process running the copied binary.
    let uids: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|x| x == std::path::Path::new(&bin)))
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|st| st.lines().find(|l| l.starts_with("Uid:")).map(|l| l.to_string()))
        .collect();
    assert_eq!(uids.len(), 1, "{uids:?}");
    assert_eq!(uids[0].split_whitespace().nth(2), Some("65534"), "effective uid: {uids:?}");
    app.stop();

    // Without CAP_BPF it says which capability it lacks, in one line.
    let no_bpf: Vec<String> = caps.iter().filter(|c| *c != "+bpf").cloned().collect();
    let wrapper = as_nobody_with(&no_bpf.join(","));
    let out = Command::new("ip")
        .args(["netns", "exec", "px-app"])
        .args(&wrapper)
        .args([&bin, "--backend", "af-xdp", "--iface", "px-app0", "--ip", "10.99.0.1/24", "--admin", ""])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("lacks CAP_BPF") && err.contains("deploy/px-appliance.service"), "{err}");
}

/// `px-appliance check` for the testbed's appliance inside px-app, under `wrapper`:
/// (exit success, stdout).
fn check(wrapper: &[String], extra: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", "px-app"])
        .args(wrapper)
        .args([BIN, "check", "--backend", "af-xdp", "--ip", "10.99.0.1/24"])
        .args(if extra.contains(&"--iface") { &[][..] } else { &["--iface", "px-app0"][..] })
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The FAIL lines of a check's report.
fn fails(report: &str) -> Vec<&str> {
    report.lines().filter(|l| l.starts_with("FAIL")).collect()
}

fn in_app(args: &[&str]) {
    let st = Command::new("ip").args(["netns", "exec", "px-app"]).args(args).status().unwrap();
    assert!(st.success(), "{args:?}");
}

#[test]
fn check_passes_on_the_testbed_and_names_each_broken_setup() {
    af_xdp_only();
    let Some(_tb) = testbed(2) else { return };
    let (ok, report) = check(&[], &["--queues", "2"]);
    assert!(ok, "{report}");
    assert!(fails(&report).is_empty(), "{report}");
    for want in
        ["OK   capabilities", "OK   AF_XDP sockets", "px-app0: 2 RX queue(s), each served", "no XDP program attached"]
    {
        assert!(report.contains(want), "{want}: {report}");
    }
    // More queues than the device has.
    let (ok, report) = check(&[], &["--queues", "4"]);
    assert!(!ok);
    assert!(fails(&report).iter().any(|l| l.contains("4 queue(s) asked") && l.contains("2 RX queue(s)")), "{report}");
    assert!(report.contains("ethtool -L px-app0 combined 4"), "{report}");
    // No such interface.
    let (ok, report) = check(&[], &["--iface", "nosuch0"]);
    assert!(!ok && fails(&report).iter().any(|l| l.contains("\"nosuch0\": not found")), "{report}");
    // The kernel holds the appliance's address too.
    in_app(&["ip", "addr", "add", "10.99.0.1/24", "dev", "px-app0"]);
    let (ok, report) = check(&[], &[]);
    in_app(&["ip", "addr", "del", "10.99.0.1/24", "dev", "px-app0"]);
    assert!(!ok && fails(&report).iter().any(|l| l.contains("the kernel also holds [\"10.99.0.1\"]")), "{report}");
    // The link is down.
    in_app(&["ip", "link", "set", "px-app0", "down"]);
    let (ok, report) = check(&[], &[]);
    in_app(&["ip", "link", "set", "px-app0", "up"]);
    assert!(!ok && fails(&report).iter().any(|l| l.contains("px-app0: link is down")), "{report}");
    // Without the capabilities.
    let (ok, report) = check(&as_nobody_with(""), &[]);
    assert!(!ok, "{report}");
    assert!(fails(&report).iter().any(|l| l.contains("lacks CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF")), "{report}");
    // Hugepages required and short.
    let cfg =
        common::temp_file("check-huge.toml", "[arena]\nhugepages = \"require\"\npool_bytes_per_core = 8589934592\n");
    let (ok, report) = check(&[], &["--config", cfg.to_str().unwrap()]);
    assert!(!ok && fails(&report).iter().any(|l| l.contains("for arenas") && l.contains("\"require\"")), "{report}");
    assert!(report.contains("/proc/sys/vm/nr_hugepages"), "{report}");
    // irqbalance running (any process by that name).
    let dir = std::env::temp_dir().join(format!("px-irqb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy("/bin/sleep", dir.join("irqbalance")).unwrap();
    let mut irqb = Command::new(dir.join("irqbalance")).arg("30").spawn().unwrap();
    let (ok, report) = check(&[], &[]);
    let _ = irqb.kill();
    let _ = irqb.wait();
    assert!(ok, "a warning only: {report}");
    assert!(report.lines().any(|l| l.starts_with("WARN irqbalance is running")), "{report}");
    // Another program owns the device: a running appliance.
    let app = Appliance::start(&["--queues", "2", "--admin", ""]);
    let (ok, report) = check(&[], &[]);
    app.stop();
    assert!(
        !ok && fails(&report).iter().any(|l| l.contains("XDP program (id ") && l.contains("already attached")),
        "{report}"
    );
}

/// One appliance of the ECMP testbed (scripts/ecmp-testbed.sh): serves 10.96.0.1 on
/// link `a{i}` in namespace `px-ecmp-app{i}`.
struct Anycast {
    child: Child,
    ns: String,
}

impl Anycast {
    fn start(i: usize, cfg: &std::path::Path) -> Anycast {
        let ns = format!("px-ecmp-app{i}");
        let iface = format!("a{i}");
        let cpu = ((i + 1) % 2).to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, BIN, "--backend", "af-xdp", "--iface", &iface, "--ip", "10.96.0.1/24"])
            .args(["--queues", "1", "--cores", &cpu, "--apps", "tfb,bytes,demo", "--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains("listening on http://10.96.0.1:8080"), "appliance {i}: {line:?}");
        Anycast { child, ns }
    }

    fn admin(&self, path: &str) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-s", "--max-time", "5", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:9180{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.parse().unwrap_or(0), body.to_string())
    }

    fn requests(&self) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&self.admin("/stats").1).unwrap();
        v["queues"].as_array().unwrap().iter().map(|q| q["requests"].as_u64().unwrap()).sum()
    }
}

impl Drop for Anycast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ecmp(args: &[&str]) {
    let st = Command::new(script("ecmp-testbed.sh")).args(args).status().unwrap();
    assert!(st.success(), "ecmp-testbed.sh {args:?}");
}

/// `n` new connections from the client, one request each; every answer checked.
fn ecmp_requests(n: usize) {
    let urls: Vec<String> = (0..n).map(|_| "http://10.96.0.1:8080/json".to_string()).collect();
    // One header for every URL: the server closes each connection, so each request is a
    // new flow with its own source port.
    let mut args = vec!["curl", "-s", "--max-time", "10", "-w", "%{http_code}\n", "-H", "Connection: close"];
    for u in &urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let out = Command::new("ip").args(["netns", "exec", "px-ecmp-client"]).args(&args).output().unwrap();
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), n, "{codes}");
}

#[test]
fn anycast_behind_ecmp_spreads_flows_and_drains_one_appliance_without_losing_a_byte() {
    af_xdp_only();
    let Some(_tb) = testbed(1) else { return };
    ecmp(&["up", "2"]);
    let cfg = common::temp_file("ecmp.toml", "[af_xdp]\ngateway = \"10.96.0.254\"\n");
    let (a1, a2) = (Anycast::start(1, &cfg), Anycast::start(2, &cfg));
    // Flows spread over both appliances (the router's L4 hash), each answered.
    ecmp_requests(100);
    let (n1, n2) = (a1.requests(), a2.requests());
    assert_eq!(n1 + n2, 100);
    assert!(n1 >= 10 && n2 >= 10, "flows spread: {n1} and {n2}");
    // Slow downloads in flight on both: 400 kB each at 200 kB/s.
    let downloads: Vec<std::thread::JoinHandle<Vec<u8>>> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                let out = Command::new("ip")
                    .args(["netns", "exec", "px-ecmp-client", "curl", "-s", "--max-time", "20"])
                    .args(["--limit-rate", "200k", "http://10.96.0.1:8080/bytes/400000"])
                    .output()
                    .unwrap();
                out.stdout
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a1.requests() == n1 || a2.requests() == n2 {
        assert!(Instant::now() < deadline, "downloads did not reach both appliances");
        std::thread::sleep(Duration::from_millis(20));
    }
    let in_flight_on_1 = a1.requests() - n1;
    // Drain appliance 1: its route withdrawn first, then SIGTERM.
    ecmp(&["route", "2"]);
    assert!(Command::new("kill").args(["-TERM", &a1.child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(2);
    while a1.admin("/healthz").0 != 503 {
        assert!(Instant::now() < deadline, "/healthz never said draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    // New flows all go to appliance 2 while appliance 1 still finishes its downloads.
    let before2 = a2.requests();
    ecmp_requests(50);
    assert_eq!(a2.requests() - before2, 50, "every new flow went to the remaining appliance");
    // Every download arrives whole, those appliance 1 was sending included.
    let want = px_apps::bytes::expected(400_000);
    for d in downloads {
        let got = d.join().unwrap();
        assert!(got == want, "a download arrived with {} bytes, not the 400000 expected", got.len());
    }
    let mut a1 = a1;
    let st = a1.child.wait().unwrap();
    assert!(st.success(), "appliance 1 exited {st}");
    let mut log = String::new();
    a1.child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(counter(&log, "cut_at_shutdown") == 0, "{log}");
    assert!(in_flight_on_1 >= 1, "appliance 1 had downloads in flight when drained");
    drop(a2);
    ecmp(&["down"]);
}
