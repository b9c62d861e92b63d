#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then format, lints,
# unit + integration tests, the arena under Miri, and a build of the benches.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== release build"
cargo build --release
echo "== tests"
cargo test --workspace
echo "== memory module under Miri"
scripts/miri.sh
echo "== benches build"
cargo bench --workspace --no-run
echo "test.sh: all green"
