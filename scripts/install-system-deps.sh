#!/usr/bin/env bash
# Installs what the agent, its lab and its tests use on a fresh Debian 12 machine, and mounts
# the kernel file systems bpftrace needs. Safe to run again.
set -euo pipefail

packages=(
  bpftrace        # the probes
  util-linux      # setpriv: bpftrace dies with the agent
  conntrack       # the lab's independent reading of the kernel counters
  iptables iproute2
  nftables        # nft: the lab's native nftables rules
  dnsmasq-base    # the lab's DNS servers
  gcc libc6-dev musl-tools  # race generators and the glibc/musl resolver programs
  curl            # the demo reads /metrics
  procps psmisc
  prometheus      # promtool and a real server for the alert end-to-end test
  yamllint
  shellcheck
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: must run as root (apt-get, mount)" >&2
  exit 1
fi

# shellcheck source=scripts/lib/ensure-packages.sh
. "$(dirname "$0")/lib/ensure-packages.sh"
ensure_packages install-system-deps "${packages[@]}"
# Debian starts the packaged Prometheus server; the tests start their own on loopback.
if systemctl is-active --quiet prometheus 2>/dev/null; then systemctl stop prometheus || true; fi

mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug || true
echo "install-system-deps: ready (bpftrace $(bpftrace --version | awk '{print $2}'), kernel $(uname -r))"
