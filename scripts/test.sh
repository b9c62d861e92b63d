#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then format, lints,
# unit + integration tests (PostgreSQL started by scripts/db.sh), the DPDK backend's tests, the arena under Miri, a build of the benches, the
# benchmark harness in quick mode, and the soak's 2-minute form.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
echo "== PostgreSQL for the TechEmpower database tests (scripts/db.sh)"
if [ "$(id -u)" -eq 0 ]; then
  scripts/db.sh up
elif [ -n "${CI:-}" ]; then
  echo "test.sh: the database tests need root to start PostgreSQL (scripts/db.sh); CI must run as root" >&2
  exit 1
else
  echo "test.sh: not root: the database tests will say SKIPPED unless PostgreSQL runs on 127.0.0.1:5432"
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
cargo clippy -p px-apps -p px-dataplane -p px-nic-dpdk-sys --all-targets --features px-apps/dpdk -- -D warnings
echo "== release build"
cargo build --release
echo "== tests"
cargo test --workspace
echo "== DPDK backend (cargo feature dpdk, against Debian's DPDK)"
# Asked for without DPDK on the machine, the build stops with an error naming the package.
if PKG_CONFIG_LIBDIR=/nonexistent cargo check -q -p px-nic-dpdk-sys >target/dpdk-missing.log 2>&1; then
  echo "test.sh: the dpdk bindings built without a libdpdk.pc" >&2
  exit 1
fi
grep -q "apt-get install libdpdk-dev" target/dpdk-missing.log \
  || { echo "test.sh: a missing DPDK did not name the package:" >&2; cat target/dpdk-missing.log >&2; exit 1; }
cargo test -p px-apps --features dpdk --test dpdk
# The packet-path tests on a DPDK net_af_packet port over the same testbed.
PX_TEST_BACKEND=dpdk cargo test -p px-apps --features dpdk --test af_xdp -- ping_and_arp next_hop bad_checksums \
  ipv6_dual slow_clients http_over transfers_are ten_thousand sigterm async_handlers
echo "== memory module under Miri"
scripts/miri.sh
echo "== benches build"
cargo bench --workspace --no-run
echo "== instruction counts per request, short run (keeps scripts/profile.sh from rotting)"
scripts/profile.sh --requests 2000 --out target/profile-ci
[ "$(grep -c 'instructions per request' target/profile-ci/profile.md)" -eq 2 ]
echo "== benchmark harness, quick mode (keeps scripts/bench.sh from rotting)"
if [ "$(id -u)" -eq 0 ]; then
  scripts/bench.sh --quick --out target/bench-quick
  echo "== loss harness, smoke run (scripts/bench-loss.sh)"
  scripts/bench-loss.sh --smoke --out target/bench-loss-smoke
  grep -q '| 1 % |' target/bench-loss-smoke/results.md
  echo "== soak, quick form (scripts/soak.sh --quick: 2 minutes of mixed traffic with faults)"
  scripts/soak.sh --quick
elif [ -n "${CI:-}" ]; then
  echo "test.sh: the benchmark harness needs root (testbed namespaces); CI must run as root" >&2
  exit 1
else
  echo "test.sh: SKIPPED scripts/bench.sh --quick (needs root for the testbed)"
fi
echo "test.sh: all green"
