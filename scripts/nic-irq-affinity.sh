#!/usr/bin/env bash
# Pin each queue's interrupt of IFACE to one CPU of a list, in order, so queue i's IRQ
# fires on the CPU whose loop serves queue i. Stops irqbalance from moving them.
# Usage: scripts/nic-irq-affinity.sh IFACE CPULIST   (e.g. eth1 8-15)
set -euo pipefail
iface=${1:?usage: nic-irq-affinity.sh IFACE CPULIST}
list=${2:?usage: nic-irq-affinity.sh IFACE CPULIST}
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
cpus=()
IFS=, read -ra parts <<< "$list"
for p in "${parts[@]}"; do
  if [[ $p == *-* ]]; then for c in $(seq "${p%-*}" "${p#*-}"); do cpus+=("$c"); done; else cpus+=("$p"); fi
done
systemctl stop irqbalance 2>/dev/null || true
irqs=$(grep -E "${iface}[-_]" /proc/interrupts | awk -F: '{print $1}' | tr -d ' ')
[ -n "$irqs" ] || { echo "no per-queue IRQs for $iface in /proc/interrupts (virtual NICs such as veth have none)" >&2; exit 1; }
i=0
for irq in $irqs; do
  cpu=${cpus[$((i % ${#cpus[@]}))]}
  echo "$cpu" > "/proc/irq/$irq/smp_affinity_list"
  echo "IRQ $irq -> CPU $cpu"
  i=$((i + 1))
done
