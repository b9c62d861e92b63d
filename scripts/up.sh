#!/usr/bin/env bash
# Bring the appliance up. As root on a kernel with AF_XDP: the veth testbed, and
# px-appliance on AF_XDP with our TCP engine at http://10.99.0.1:8080 and
# http://[fd99::1]:8080 (reach them from the px-client namespace). Otherwise — or if the AF_XDP start fails — kernel sockets on
# http://127.0.0.1:8080, and it says so. Without --apps it serves every app: tfb, bytes,
# demo, and wiki (Parallelopedia) on the real 206-page dump in data/, whose index it
# builds first. As root it also starts PostgreSQL with the TechEmpower schema
# (scripts/db.sh; PX_NO_DB=1 skips it), so /db, /queries, /updates, /fortunes and
# /cached-queries answer. Extra arguments go to px-appliance. Ctrl-C stops it
# gracefully (the database keeps running: scripts/db.sh down removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
queues=$(nproc)
bin=target/release/px-appliance

case " $* " in
  *" --apps "*|*" --apps="*) ;;
  *)
    work=target/wiki-demo
    dump=enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened
    mkdir -p "$work"
    # python3's bz2 rather than bunzip2: a fresh machine has the one, not always the other.
    [ -s "$work/$dump.xml" ] || python3 -c 'import bz2, shutil, sys; shutil.copyfileobj(bz2.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      "data/$dump.bz2" "$work/$dump.xml"
    [ -s "$work/index/titles.fst" ] || "$bin" wiki-index --xml "$work/$dump.xml" --out "$work/index" >&2
    set -- --apps tfb,bytes,demo,wiki --wiki-dir "$work/index" "$@"
    ;;
esac

db=0
kernel() {
  echo "up.sh: serving over KERNEL SOCKETS on http://127.0.0.1:8080 ($queues queues): $1" >&2
  echo "up.sh: try: curl http://127.0.0.1:8080/plaintext" >&2
  shift
  [ $db -eq 1 ] && set -- --db-address 127.0.0.1:5432 "$@"
  exec "$bin" --backend kernel --listen 127.0.0.1:8080 --queues "$queues" "$@"
}

if [ "$(id -u)" -ne 0 ]; then
  echo "up.sh: not root: no PostgreSQL (scripts/db.sh needs root); the database routes answer 503" >&2
  kernel "AF_XDP needs root" "$@"
fi
testbed=1
scripts/testbed.sh up --queues "$queues" >&2 || testbed=0
if [ "${PX_NO_DB:-0}" != 1 ]; then
  # After the testbed: the database's relay for the AF_XDP side lives in px-client.
  if scripts/db.sh up; then db=1; else echo "up.sh: PostgreSQL did not start; the database routes answer 503" >&2; fi
fi
if [ $testbed -eq 0 ]; then
  kernel "the veth testbed could not be created" "$@"
fi
xdp_db=()
[ $db -eq 1 ] && xdp_db=(--db-address 10.99.0.2:5432)
log=$(mktemp)
ip netns exec px-app "$bin" --backend af-xdp --iface px-app0 --queues "$queues" --ip 10.99.0.1/24 --ip fd99::1/64 "${xdp_db[@]}" "$@" > "$log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true' INT TERM
for _ in $(seq 200); do
  grep -q listening "$log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if ! grep -q listening "$log"; then
  wait "$pid" 2>/dev/null || true
  kernel "the AF_XDP start failed (see the error above)" "$@"
fi
cat "$log"
echo "up.sh: AF_XDP on the veth testbed. Try: ip netns exec px-client curl http://10.99.0.1:8080/plaintext" >&2
echo "up.sh: over IPv6: ip netns exec px-client curl -6 'http://[fd99::1]:8080/plaintext'" >&2
[ $db -eq 1 ] && echo "up.sh: and the database tests: ip netns exec px-client curl 'http://10.99.0.1:8080/queries?queries=20'" >&2
wait "$pid"
