#!/usr/bin/env bash
# Several appliances behind a router's ECMP route, as anycast: each appliance serves the
# same service address 10.96.0.1 on its own link; the router (namespace px-ecmp-router)
# has a multipath route to it over every link with the L4 hash
# (fib_multipath_hash_policy=1), and the client (px-ecmp-client, 10.98.0.2) reaches it
# through the router (10.98.0.1).
#
#   px-ecmp-client ──ec0/er0── px-ecmp-router ──r1/a1── px-ecmp-app1  (10.96.0.1 on a1)
#                                              ──r2/a2── px-ecmp-app2  (10.96.0.1 on a2) …
#
# Each router link holds 10.96.0.254/32, the appliances' gateway, so a reply leaves by the
# link its flow came in on. The router also pins each flow to the link it was first
# routed to (conntrack marks): withdrawing an appliance's route then moves only new flows
# — as a production L4 balancer (Katran, IPVS) or a resilient next-hop group does — and
# the drained appliance finishes the responses it owes. Start an appliance i with
#   ip netns exec px-ecmp-appI px-appliance --backend af-xdp --iface aI --ip 10.96.0.1/24 \
#     --config <(printf '[af_xdp]\ngateway = "10.96.0.254"\n')
# Usage: scripts/ecmp-testbed.sh up [N]   (N appliances' links, default 2; root)
#        scripts/ecmp-testbed.sh route I [I ...]  (the multipath route over these links only)
#        scripts/ecmp-testbed.sh down
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
R=px-ecmp-router C=px-ecmp-client
die() { echo "ecmp-testbed.sh: $*" >&2; exit 1; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
plain() { ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null; }

route() { # route I [I ...]: the multipath route to the service over links I...
  local hops=()
  for i in "$@"; do hops+=(nexthop dev "r$i" weight 1); done
  ip -n "$R" route replace 10.96.0.1/32 "${hops[@]}"
}

up() {
  local n=$1
  [ "$(id -u)" -eq 0 ] || die "needs root"
  down >/dev/null 2>&1 || true
  ip netns add "$R"; ip netns add "$C"
  ip -n "$R" link set lo up; ip -n "$C" link set lo up
  ip link add ec0 type veth peer name er0
  ip link set ec0 netns "$C"; ip link set er0 netns "$R"
  ip -n "$C" addr add 10.98.0.2/24 dev ec0; ip -n "$C" link set ec0 up
  ip -n "$C" route add default via 10.98.0.1
  ip -n "$R" addr add 10.98.0.1/24 dev er0; ip -n "$R" link set er0 up
  plain "$C" ec0; plain "$R" er0
  ip netns exec "$C" sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65535"
  ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  local links=()
  for i in $(seq "$n"); do
    local A=px-ecmp-app$i
    ip netns add "$A"; ip -n "$A" link set lo up
    ip link add "r$i" type veth peer name "a$i"
    ip link set "r$i" netns "$R"; ip link set "a$i" netns "$A"
    ip -n "$R" addr add 10.96.0.254/32 dev "r$i"
    ip netns exec "$R" sysctl -qw "net.ipv4.conf.r$i.rp_filter=0"
    ip -n "$R" link set "r$i" up; ip -n "$A" link set "a$i" up
    ip netns exec "$A" sysctl -qw "net.ipv6.conf.a$i.disable_ipv6=1"
    plain "$R" "r$i"
    links+=("$i")
  done
  route "${links[@]}"
  # Each flow keeps the link it was first routed to: its conntrack entry remembers the
  # link (mark i), and its later packets are routed by that mark (table 100+i).
  local post="" pre=""
  for i in $(seq "$n"); do
    post+="ct state new oifname \"r$i\" ct mark set $i; "
    ip -n "$R" rule add fwmark "$i" table $((100 + i))
    ip -n "$R" route add 10.96.0.1/32 dev "r$i" table $((100 + i))
  done
  ip netns exec "$R" nft -f - <<NFT
table ip ecmp {
  chain pre { type filter hook prerouting priority mangle; meta mark set ct mark; }
  chain post { type filter hook postrouting priority mangle; $post }
}
NFT
  "$here/hugepages.sh" 128 >/dev/null
  echo "ecmp-testbed: up, $n appliance link(s); service 10.96.0.1 via px-ecmp-router from px-ecmp-client (10.98.0.2)"
}

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep '^px-ecmp-' || true); do ip netns del "$ns"; done
}

case "${1:-}" in
  up) up "${2:-2}" ;;
  route) shift; route "$@" ;;
  down) down; echo "ecmp-testbed: down" ;;
  *) die "usage: ecmp-testbed.sh up [N] | route I [I ...] | down" ;;
esac
