#!/usr/bin/env bash
# Parallelopedia on the real 206-page dump in data/ (CC BY-SA, see data/README.md):
# decompresses it, builds the index (px-appliance wiki-index), and brings the appliance up
# with the wiki app through scripts/up.sh (AF_XDP on the testbed as root, else kernel
# sockets on 127.0.0.1:8080). Open http://ADDRESS:8080/ for the search page.
# Usage: scripts/wiki-demo.sh [WORKDIR] [more px-appliance arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/px-wiki-demo}; shift || true
dump=enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened
mkdir -p "$work"
[ -s "$work/$dump.xml" ] || bunzip2 -kc "data/$dump.bz2" > "$work/$dump.xml"
cargo build --release -q
target/release/px-appliance wiki-index --xml "$work/$dump.xml" --out "$work/index"
exec scripts/up.sh --apps tfb,wiki --wiki-dir "$work/index" "$@"
