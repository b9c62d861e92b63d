#!/usr/bin/env bash
# Run a cargo-fuzz target for SECONDS (default 60) from the committed seeds, with the
# target's dictionary if there is one (fuzz/TARGET.dict; stack_http uses http_bytes's).
# Usage: scripts/fuzz.sh [tcp_frames|http_bytes|stack_http] [SECONDS]   (needs the nightly toolchain)
# SANITIZER=none builds without AddressSanitizer (default: address); see docs/operations.md.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-tcp_frames}
secs=${2:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p "fuzz/corpus/$target"
dict=()
dict_file="fuzz/$target.dict"
[ "$target" = stack_http ] && dict_file=fuzz/http_bytes.dict # the same HTTP tokens
[ -f "$dict_file" ] && dict=(-dict="$dict_file")
cargo +nightly fuzz run -s "${SANITIZER:-address}" "$target" "fuzz/corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=2048 "${dict[@]}"
