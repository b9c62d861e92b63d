#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian machine (idempotent):
# load/client tools, nginx and matplotlib for the benchmark harness, DPDK and libclang
# for the DPDK backend, Chromium and
# playwright-core for the search-page test, the nightly Miri
# component, and a hugepage reservation.
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v wrk  >/dev/null || need+=(wrk)
command -v ab   >/dev/null || need+=(apache2-utils)
command -v python3 >/dev/null || need+=(python3)
command -v valgrind >/dev/null || need+=(valgrind)
command -v ethtool >/dev/null || need+=(ethtool)
command -v ping >/dev/null || need+=(iputils-ping)
command -v tcpdump >/dev/null || need+=(tcpdump)
# Loss for the IPv6 transfer test and scripts/bench-loss.sh (nftables numgen random).
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v setpriv >/dev/null || need+=(util-linux)
# The benchmark harness (scripts/bench.sh --quick runs in CI): nginx is a contender.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
# The Parallelopedia browser test: Debian's Chromium driven by playwright-core (npm).
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v bunzip2 >/dev/null || need+=(bzip2)
# The DPDK backend (cargo feature dpdk): Debian's DPDK (its PMDs come with libdpdk-dev),
# and libclang for bindgen, which reads DPDK's headers at build time.
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists 'libdpdk >= 22.11' 2>/dev/null || need+=(libdpdk-dev)
# (libclang.so or libclang-N.so, as bindgen looks for it: libclang-cpp, which other
# packages bring in, is another library and does not do.)
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*' >/dev/null \
  || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "install-test-deps: apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if rustup toolchain list | grep -q '^nightly'; then
  if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri'; then
    rustup component add miri rust-src --toolchain nightly >/dev/null 2>&1 \
      || echo "install-test-deps: could not add miri; scripts/miri.sh will use valgrind" >&2
  fi
else
  echo "install-test-deps: no nightly toolchain; scripts/miri.sh will use valgrind" >&2
fi
if [ ! -d "$(dirname "$0")/../tests/browser/node_modules/playwright-core" ]; then
  (cd "$(dirname "$0")/../tests/browser" && npm ci --silent --no-audit --no-fund) \
    || { echo "install-test-deps: npm ci in tests/browser failed (playwright-core)" >&2; exit 1; }
fi
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib \
  || { echo "install-test-deps: pip could not install matplotlib (bench plots)" >&2; exit 1; }
"$(dirname "$0")/hugepages.sh" 128
