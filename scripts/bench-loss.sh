#!/usr/bin/env bash
# Loss recovery side by side: px-af-xdp (our TCP engine) against Linux's own TCP (the
# kernel backend and nginx, CUBIC + SACK + RACK) on the same veth link, with packets
# dropped at random in both directions by an nftables rule in the px-client namespace —
# the same rule for every contender, kernel TCP or ours.
#
#   scripts/bench-loss.sh                 5 rounds, loss 0 / 0.1 / 1 / 5 %
#   scripts/bench-loss.sh --quick         2 rounds, 1 and 5 % only
#   scripts/bench-loss.sh --smoke         1 round, 1 %, px-af-xdp and px-kernel (CI)
#   options: --rounds N  --rates "0 0.1 1 5"  --contenders "px-af-xdp px-kernel nginx px-kernel-bbr"
#            (px-kernel-bbr: the kernel backend with Linux's BBR instead of CUBIC, shown
#            beside the others but not in the ratio: the comparison is CUBIC to CUBIC)
#            --bytes N (bulk body, default 16 MiB)  --out DIR
#
# Each round starts every contender in turn (interleaved: round 1 of all, then round 2
# ...) and, per loss rate, times one fetch of the bulk body with curl and runs px-load
# (open loop, 16 connections, 1000 requests/s of /json for 5 s) for the small-request
# p99. Medians with min–max go to OUT/results.md; each run to OUT/runs.jsonl.
#
# Fairness: nftables counts a GSO super-frame as one packet, so segmentation offload is
# turned off on px-app0 (the kernel servers' side) and GRO on px-client0 (the testbed
# already turns the client's offloads off): every contender's frames are MTU-sized on the
# link and each can be lost on its own. Linux's congestion control in px-app is set to
# cubic for the run (this machine's default is bbr; px-kernel-bbr keeps it); SACK and RACK
# are Linux's defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-common.sh

rounds=5 rates="0 0.1 1 5" contenders="px-af-xdp px-kernel nginx px-kernel-bbr" bytes=16777216 out=""
small_conns=16 small_rate=1000 small_secs=5
while [ $# -gt 0 ]; do
  case $1 in
    --quick) rounds=2 rates="1 5" small_secs=3; shift ;;
    --smoke) rounds=1 rates="1" small_secs=2 contenders="px-af-xdp px-kernel"; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --contenders) contenders=$2; shift 2 ;;
    --bytes) bytes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench-loss.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench-loss.sh: needs root (netns, nftables, AF_XDP)" >&2; exit 1; }
command -v nft >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
case " $contenders " in *" nginx "*)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "bench-loss.sh: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; } ;;
esac
out=${out:-target/bench-loss/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$out"
runs=$out/runs.jsonl
: > "$runs"
log() { echo "bench-loss: $*" >&2; }

cargo build --release -q -p px-apps -p px-load 2>&1 | tail -3
scripts/testbed.sh up --queues 1 >/dev/null
ADDR=10.99.0.1 PORT=8080
# nftables counts what the IP layer sees: every frame must stay a frame on both sides
# (no GSO super-frames from the kernel contenders, no GRO merging in px-client). The
# cleanup puts the testbed's link model back (scripts/testbed.sh up).
ip netns exec px-app ethtool -K px-app0 tso off gso off gro off >/dev/null
ip netns exec px-client ethtool -K px-client0 gro off >/dev/null
old_cc=$(ip netns exec px-app sysctl -n net.ipv4.tcp_congestion_control)
old_allowed=$(sysctl -n net.ipv4.tcp_allowed_congestion_control)
# A namespace may only pick from the allowed list, which the initial namespace sets.
sysctl -qw net.ipv4.tcp_allowed_congestion_control="$old_allowed cubic bbr"
ip netns exec px-app sysctl -qw net.ipv4.tcp_sack=1 net.ipv4.tcp_recovery=1
linux_cc() { ip netns exec px-app sysctl -qw net.ipv4.tcp_congestion_control="$1"; }

nginx_prefix=$(mktemp -d /tmp/px-loss-nginx.XXXX)
mkdir -p "$nginx_prefix/www/bytes"
head -c "$bytes" /dev/zero > "$nginx_prefix/www/bytes/$bytes"
chmod -R a+rX "$nginx_prefix"  # nginx's workers run as nobody
sed -e "s|@WORKERS@|1|; s|@LISTEN@|$ADDR:$PORT|; s|@PREFIX@|$nginx_prefix|g" benches/peers/nginx/nginx.conf.in \
  | sed -e "s|location = /plaintext {|location /bytes/ { root $nginx_prefix/www; default_type application/octet-stream; }\n        location = /plaintext {|" \
  > "$nginx_prefix/nginx.conf"

addr_on() { ip -n px-app addr replace "$ADDR/24" dev px-app0; }
addr_off() { ip -n px-app addr del "$ADDR/24" dev px-app0 2>/dev/null || true; }
loss_off() { ip netns exec px-client nft delete table inet pxloss 2>/dev/null || true; }
cleanup() {
  loss_off
  addr_off
  scripts/testbed.sh up --queues 1 >/dev/null 2>&1
  [ -n "${server_pid:-}" ] && kill -KILL "$server_pid" 2>/dev/null
  ip netns exec px-app sysctl -qw net.ipv4.tcp_congestion_control="$old_cc" 2>/dev/null
  sysctl -qw net.ipv4.tcp_allowed_congestion_control="$old_allowed" 2>/dev/null
  rm -rf "$nginx_prefix"
  true
}
trap cleanup EXIT

# Drops PCT percent of the packets the client receives and of those it sends.
loss_on() {
  local per10k
  per10k=$(awk -v p="$1" 'BEGIN {printf "%d", p * 100 + 0.5}')
  loss_off
  [ "$per10k" -gt 0 ] || return 0
  ip netns exec px-client nft -f - <<EOF
table inet pxloss {
  chain rx {
    type filter hook prerouting priority -300; policy accept;
    iifname "px-client0" counter
    iifname "px-client0" numgen random mod 10000 < $per10k counter drop
  }
  chain tx {
    type filter hook postrouting priority 300; policy accept;
    oifname "px-client0" counter
    oifname "px-client0" numgen random mod 10000 < $per10k counter drop
  }
}
EOF
}

# "seen dropped" packets of both chains so far.
loss_counts() {
  ip netns exec px-client nft list table inet pxloss 2>/dev/null \
    | awk '/counter packets/ {for (i = 1; i <= NF; i++) if ($i == "packets") v[n++] = $(i + 1)}
           END {if (n == 4) print v[0] + v[2], v[1] + v[3]; else print 0, 0}'
}

start() {
  local c=$1 logf=$out/$1.log
  case $c in
    px-af-xdp)
      addr_off
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend af-xdp --iface px-app0 \
        --queues 1 --cores "$server_cpu" --ip "$ADDR/24" --log-level warn > "$logf" 2>&1 & ;;
    px-kernel|px-kernel-bbr)
      addr_on
      if [ "$c" = px-kernel ]; then linux_cc cubic; else linux_cc bbr; fi
      ip netns exec px-app taskset -c "$server_cpu" target/release/px-appliance --backend kernel \
        --listen "$ADDR:$PORT" --queues 1 --cores "$server_cpu" --log-level warn > "$logf" 2>&1 & ;;
    nginx)
      addr_on
      linux_cc cubic
      ip netns exec px-app taskset -c "$server_cpu" "$(command -v nginx || echo /usr/sbin/nginx)" \
        -c "$nginx_prefix/nginx.conf" -p "$nginx_prefix" > "$logf" 2>&1 & ;;
    *) log "unknown contender $c"; exit 2 ;;
  esac
  server_pid=$!
  wait_http_ready "http://$ADDR:$PORT/json" "$logf" "bench-loss: $c"
}

for r in $(seq "$rounds"); do
  for c in $contenders; do
    start "$c"
    for rate in $rates; do
      loss_on "$rate"
      # Bulk: one fetch of the whole body (3 minutes at most).
      res=$(ip netns exec px-client taskset -c "$load_cpu" curl -s -o /dev/null --max-time 180 \
        -w '%{http_code} %{size_download} %{time_total}' "http://$ADDR:$PORT/bytes/$bytes" || true)
      read -r code size secs <<< "${res:-0 0 0}"
      read -r seen1 drop1 <<< "$(loss_counts)"
      # Small requests: open-loop /json, p99 corrected for coordinated omission.
      small=$(ip netns exec px-client taskset -c "$load_cpu" target/release/px-load --addr "$ADDR:$PORT" \
        --path /json --conns "$small_conns" --rate "$small_rate" --secs "$small_secs" --warmup 0.5 2>/dev/null \
        || echo '{"failed":1}')
      read -r seen2 drop2 <<< "$(loss_counts)"
      python3 - "$c" "$r" "$rate" "$code" "$size" "$secs" "$bytes" "$small" "$seen1" "$drop1" "$seen2" "$drop2" >> "$runs" <<'PY'
import json, sys
c, r, rate, code, size, secs, want, small, s1, d1, s2, d2 = sys.argv[1:]
ok = code == "200" and size == want
rec = {"contender": c, "round": int(r), "loss_pct": float(rate), "bulk_ok": ok,
       "bulk_s": float(secs) if ok else None, "bulk_packets": int(s1), "bulk_dropped": int(d1)}
sm = json.loads(small)
rec.update({"small_" + k: v for k, v in sm.items()})
rec["small_packets"], rec["small_dropped"] = int(s2) - int(s1), int(d2) - int(d1)
print(json.dumps(rec))
PY
      log "round $r $c loss $rate %: bulk ${secs}s (code $code, $size bytes), small $(echo "$small" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("p99", d.get("p99_us"), "us, done", d.get("completed"), "errors", d.get("errors"))')"
    done
    loss_off
    stop_server
  done
done

python3 scripts/bench-loss-report.py "$runs" "$out/results.md" "$rounds" "$bytes"
log "results: $out/results.md"
# A fetch that failed (wrong size, timeout) is a failure of the run, not a data point.
python3 - "$runs" <<'PY'
import json, sys
bad = [r for r in map(json.loads, open(sys.argv[1])) if not r["bulk_ok"] or r.get("small_failed")]
for r in bad:
    print(f"bench-loss: FAILED run: {r['contender']} at {r['loss_pct']} % (round {r['round']})", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
