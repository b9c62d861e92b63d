#!/usr/bin/env bash
# Bring the appliance up. As root on a kernel with AF_XDP: the veth testbed, and
# px-appliance on AF_XDP with our TCP engine at http://10.99.0.1:8080 (reach it from the
# px-client namespace). Otherwise — or if the AF_XDP start fails — kernel sockets on
# http://127.0.0.1:8080, and it says so. Without --apps it serves every app: tfb, bytes,
# demo, and wiki (Parallelopedia) on the real 206-page dump in data/, whose index it
# builds first. Extra arguments go to px-appliance. Ctrl-C stops it gracefully.
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

kernel() {
  echo "up.sh: serving over KERNEL SOCKETS on http://127.0.0.1:8080 ($queues queues): $1" >&2
  echo "up.sh: try: curl http://127.0.0.1:8080/plaintext" >&2
  exec "$bin" --backend kernel --listen 127.0.0.1:8080 --queues "$queues" "$@"
}

if [ "$(id -u)" -ne 0 ]; then
  kernel "AF_XDP needs root" "$@"
fi
if ! scripts/testbed.sh up --queues "$queues" >&2; then
  kernel "the veth testbed could not be created" "$@"
fi
log=$(mktemp)
ip netns exec px-app "$bin" --backend af-xdp --iface px-app0 --queues "$queues" --ip 10.99.0.1/24 "$@" > "$log" &
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
wait "$pid"
