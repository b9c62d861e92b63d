#!/usr/bin/env bash
# Reserve 2 MiB hugepages for the arena pools (and later AF_XDP UMEM).
# Usage: scripts/hugepages.sh [PAGES]   (default 128 = 256 MiB; never lowers a reservation)
set -euo pipefail
want=${1:-128}
if [ "$(id -u)" -ne 0 ]; then
  echo "hugepages.sh: not root; leaving the reservation alone (px-appliance falls back to 4 KiB pages)" >&2
  exit 0
fi
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then
  echo "$want" > /proc/sys/vm/nr_hugepages
fi
got=$(cat /proc/sys/vm/nr_hugepages)
free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
echo "hugepages: $got reserved, $free free (2 MiB each)"
if [ "$got" -lt "$want" ]; then
  echo "hugepages.sh: asked for $want, the kernel gave $got (memory too fragmented?)" >&2
fi
