#!/usr/bin/env bash
# The AF_XDP testbed: network namespaces px-app and px-client joined by a veth pair
# px-app0 <-> px-client0 with N queues. The appliance owns 10.99.0.1 and fd99::1 in
# userspace (the px-app kernel has no address on px-app0, IPv6 off there so it stays
# silent); the client kernel is 10.99.0.2 and fd99::2 in px-client.
#
#   scripts/testbed.sh up [--queues N] [--link fair|softirq|raw]
#                                        create (idempotent; recreated if N differs);
#                                        --link: the link model (below; default softirq,
#                                        the harnesses use fair)
#   scripts/testbed.sh down              remove everything
#   scripts/testbed.sh status            show what exists
#   scripts/testbed.sh pin               pin the NAPI threads again (fair link)
#
# Then: ip netns exec px-app target/release/px-appliance --backend af-xdp \
#         --iface px-app0 --queues N --ip 10.99.0.1/24 --ip fd99::1/64
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
APP_NS=px-app CLIENT_NS=px-client APP_IF=px-app0 CLIENT_IF=px-client0
CLIENT_IP=10.99.0.2/24 CLIENT_IP6=fd99::2/64

die() { echo "testbed.sh: $*" >&2; exit 1; }

need_tools() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, veth, ethtool)"
  local missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v ethtool >/dev/null || missing+=(ethtool)
  if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${missing[*]}"
    echo "testbed.sh: installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

current_queues() {
  ip netns exec "$APP_NS" sh -c "ls -d /sys/class/net/$APP_IF/queues/rx-* 2>/dev/null" | wc -l
}

up() {
  local queues=$1 link=$2
  need_tools
  if ns_exists "$APP_NS" && ns_exists "$CLIENT_NS" && [ "$(current_queues)" = "$queues" ]; then
    echo "testbed: already up with $queues queue(s)"
  else
    down >/dev/null 2>&1 || true
    ip netns add "$APP_NS"
    ip netns add "$CLIENT_NS"
    ip link add "$APP_IF" numtxqueues "$queues" numrxqueues "$queues" type veth \
      peer name "$CLIENT_IF" numtxqueues "$queues" numrxqueues "$queues"
    ip link set "$APP_IF" netns "$APP_NS"
    ip link set "$CLIENT_IF" netns "$CLIENT_NS"
    ip -n "$APP_NS" link set lo up
    ip -n "$CLIENT_NS" link set lo up
    ip -n "$CLIENT_NS" addr add "$CLIENT_IP" dev "$CLIENT_IF"
    ip -n "$APP_NS" link set "$APP_IF" up
    ip -n "$CLIENT_NS" link set "$CLIENT_IF" up
    echo "testbed: up with $queues queue(s)"
  fi
  # The px-app kernel must not speak IPv6 on the appliance's link (router and neighbour
  # solicitations from the same MAC as ours); nodad: no 1 s wait on the client.
  ip netns exec "$APP_NS" sysctl -qw "net.ipv6.conf.$APP_IF.disable_ipv6=1"
  ip -n "$CLIENT_NS" addr replace "$CLIENT_IP6" dev "$CLIENT_IF" nodad
  # The veth checksum trap: the client kernel would leave TX checksums to an offload that
  # never happens; and a generic-mode XDP program must not see 64 KiB GSO super-frames.
  ip netns exec "$CLIENT_NS" ethtool -K "$CLIENT_IF" tx off tso off gso off >/dev/null
  link "$link"
  # The client opens tens of thousands of connections per test run and closes them
  # first, so their TIME-WAITs pile up in its namespace (19,000 after two 10k runs:
  # connects then crawled through SYN retries). Let it reuse them (safe with timestamps,
  # which both ends send) and a wider port range (above the test upstreams on 9090-9092).
  ip netns exec "$CLIENT_NS" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65535"
  "$here/hugepages.sh" 128 >/dev/null
  echo "testbed: $APP_NS/$APP_IF (appliance 10.99.0.1 and fd99::1, userspace) <-> $CLIENT_NS/$CLIENT_IF ($CLIENT_IP, $CLIENT_IP6)"
}

# The link model (docs/operations.md, "A fair link"). fair: what a wire between two hosts
# and their NICs does. Every frame on the link is MTU-sized (px-app0 without TSO, so a
# kernel server's GSO super-frames are cut before the link, as a NIC's TSO would cut
# them); each side receives in NAPI mode with GRO (veth's NAPI, which GRO switches on),
# as a NIC's driver does; and each side's NAPI runs in a thread pinned to its own CPU,
# where a NIC's interrupt (its IRQ affinity) would put it: the server's receive work —
# a kernel server's TCP, the appliance's XDP program and its copy into the UMEM — on
# the server's CPU, the client's on the client's. veth otherwise runs a frame's receive
# processing in the sender's softirq, on the other side's CPU. The benchmark harnesses
# use it. softirq (the default): the same frames and GRO at the client, receive work in
# softirq, a kernel's stack steered to its own side's CPU by RPS (the appliance's XDP
# program still runs on the sender's CPU). A NAPI thread is an ordinary thread: an
# appliance spinning on both CPUs (the 2-queue tests) would hold it off where an
# interrupt would not, so everything but the harnesses keeps softirq. raw: veth's
# defaults (the client receives kernel servers' super-frames whole, and each receive
# runs on the sender's CPU), kept to compare with figures taken before the fair link.
link() {
  local app_mask client_mask
  app_mask=$(printf '%x' $((1 << ${SERVER_CPU:-1})))
  client_mask=$(printf '%x' $((1 << ${LOAD_CPU:-0})))
  case $1 in
    fair)
      ip netns exec "$APP_NS" ethtool -K "$APP_IF" tx on tso off gso on gro on >/dev/null
      ip netns exec "$CLIENT_NS" ethtool -K "$CLIENT_IF" gro on >/dev/null
      rps "$APP_NS" "$APP_IF" 0
      rps "$CLIENT_NS" "$CLIENT_IF" 0
      threaded "$APP_NS" "$APP_IF" 1
      threaded "$CLIENT_NS" "$CLIENT_IF" 1
      pin_napi ;;
    softirq)
      threaded "$APP_NS" "$APP_IF" 0
      threaded "$CLIENT_NS" "$CLIENT_IF" 0
      ip netns exec "$APP_NS" ethtool -K "$APP_IF" tx on tso off gso on gro off >/dev/null
      ip netns exec "$CLIENT_NS" ethtool -K "$CLIENT_IF" gro on >/dev/null
      rps "$APP_NS" "$APP_IF" "$app_mask"
      rps "$CLIENT_NS" "$CLIENT_IF" "$client_mask" ;;
    raw)
      threaded "$APP_NS" "$APP_IF" 0
      threaded "$CLIENT_NS" "$CLIENT_IF" 0
      ip netns exec "$APP_NS" ethtool -K "$APP_IF" tx on tso on gso on gro off >/dev/null
      ip netns exec "$CLIENT_NS" ethtool -K "$CLIENT_IF" gro off >/dev/null
      rps "$APP_NS" "$APP_IF" 0
      rps "$CLIENT_NS" "$CLIENT_IF" 0 ;;
    *) die "--link must be fair, softirq or raw" ;;
  esac
}

# threaded NS IF 0|1: NAPI in kernel threads (napi/IF-N) instead of softirq.
threaded() {
  [ "$(ip netns exec "$1" cat "/sys/class/net/$2/threaded" 2>/dev/null)" = "$3" ] && return 0
  ip netns exec "$1" sh -c "echo $3 > /sys/class/net/$2/threaded" 2>/dev/null \
    || [ "$3" = 0 ] \
    || echo "testbed.sh: $2: threaded NAPI not available (receive work stays in softirq)" >&2
}

# Our NAPI threads, one line each: PID NAME CPU-IT-BELONGS-ON (SERVER_CPU for px-app0's,
# LOAD_CPU for px-client0's).
napi_threads() {
  local p c
  for p in $(pgrep '^napi/' || true); do
    c=$(cat "/proc/$p/comm" 2>/dev/null) || continue
    case $c in
      "napi/$APP_IF-"*) echo "$p $c ${SERVER_CPU:-1}" ;;
      "napi/$CLIENT_IF-"*) echo "$p $c ${LOAD_CPU:-0}" ;;
    esac
  done
}

# Pins each side's NAPI threads to its CPU. A thread is made anew when veth re-creates
# its NAPI (an XDP program attached while GRO is off, say), unpinned: the harnesses run
# this after each start.
pin_napi() {
  local p c cpu
  napi_threads | while read -r p c cpu; do taskset -pc "$cpu" "$p" >/dev/null; done
}

# rps NS IF MASK: receive packet steering of every RX queue of IF to the CPUs in MASK.
rps() {
  local q
  for q in $(ip netns exec "$1" sh -c "ls -d /sys/class/net/$2/queues/rx-*"); do
    ip netns exec "$1" sh -c "echo $3 > $q/rps_cpus"
  done
}

down() {
  [ "$(id -u)" -eq 0 ] || die "needs root"
  ns_exists "$APP_NS" && ip netns del "$APP_NS"
  ns_exists "$CLIENT_NS" && ip netns del "$CLIENT_NS"
  echo "testbed: down"
}

status() {
  local ns p c
  ip netns exec "$APP_NS" ethtool -k "$APP_IF" 2>/dev/null | grep -E '^(tcp-segmentation|generic-(segmentation|receive))-offload' | sed "s/^/$APP_IF: /" || true
  ip netns exec "$CLIENT_NS" ethtool -k "$CLIENT_IF" 2>/dev/null | grep -E '^(tcp-segmentation|generic-(segmentation|receive))-offload' | sed "s/^/$CLIENT_IF: /" || true
  napi_threads | while read -r p c _; do echo "$c on CPU $(taskset -pc "$p" | awk '{print $NF}')"; done
  for ns in "$APP_NS" "$CLIENT_NS"; do
    if ns_exists "$ns"; then echo "== $ns"; ip -n "$ns" -br link; ip -n "$ns" -br addr; else echo "== $ns: absent"; fi
  done
}

cmd=${1:-}
shift || true
queues=2 link=softirq
while [ $# -gt 0 ]; do
  case $1 in
    --queues) queues=${2:?--queues needs a number}; shift 2 ;;
    --link) link=${2:?--link needs fair, softirq or raw}; shift 2 ;;
    *) die "unknown argument $1 (usage: up [--queues N] [--link fair|softirq|raw] | down | status)" ;;
  esac
done
[[ "$queues" =~ ^[1-9][0-9]*$ ]] || die "--queues must be a positive number"
case $cmd in
  up) up "$queues" "$link" ;;
  down) down ;;
  status) status ;;
  pin) pin_napi ;;
  *) die "usage: testbed.sh up [--queues N] [--link fair|softirq|raw] | down | status | pin" ;;
esac
