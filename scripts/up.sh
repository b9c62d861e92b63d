#!/usr/bin/env bash
# Bring the appliance up. The AF_XDP backend is not in this build yet, so this serves
# over kernel sockets on 127.0.0.1:8080 (say so loudly) with one queue per core.
# Extra arguments are passed to px-appliance (e.g. --apps tfb,bytes,demo).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
[ "$(id -u)" -eq 0 ] && scripts/hugepages.sh 128 || true
queues=$(nproc)
echo "up.sh: AF_XDP backend not available in this build; serving over KERNEL SOCKETS on http://127.0.0.1:8080 ($queues queues)" >&2
echo "up.sh: try: curl http://127.0.0.1:8080/plaintext   (Ctrl-C stops it gracefully)" >&2
exec target/release/px-appliance --backend kernel --listen 127.0.0.1:8080 --queues "$queues" "$@"
