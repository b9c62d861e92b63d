#!/usr/bin/env bash
# Run a cargo-fuzz target for SECONDS (default 60) from the committed seeds.
# Usage: scripts/fuzz.sh [tcp_frames] [SECONDS]   (needs the nightly toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-tcp_frames}
secs=${2:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p "fuzz/corpus/$target"
cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=2048
