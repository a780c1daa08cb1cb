#!/usr/bin/env bash
# First thing a kernel-matrix guest runs (as root, started by virtme's init on the machine's
# own root file system, shared read-only): it finishes the machine the way a node has it,
# runs the matrix command in the repository and records its exit status.
#
#   guest-init.sh SHARED_DIR
#
# SHARED_DIR is the host directory the runner shares writable: guest.env (what the runner
# tells the guest), command.sh (the command), results/ (files the command brings back).
set -euo pipefail
shared=$1
say() { echo "kernel-matrix: $*" >&2; }
say "guest up: kernel $(uname -r), $(cut -d' ' -f1 /proc/uptime) s since boot"

# shellcheck source=/dev/null
source "$shared/guest.env" # KERNEL_MATRIX_KERNEL, KERNEL_MATRIX_TREE, KERNEL_MATRIX_REPO

# virtme's init puts a tmpfs over /var/cache; the kernel tree, where /lib/modules/<release>
# links to, may live below it.
while findmnt -n -t tmpfs /var/cache >/dev/null; do umount /var/cache; done
if [ ! -e "/lib/modules/$(uname -r)/modules.dep" ]; then
  say "no modules for $(uname -r) under /lib/modules (expected a link into $KERNEL_MATRIX_TREE)"
  exit 125
fi

# /tmp private to the guest; /usr and /etc are already writable overlays (virtme). A
# repository checked out under /tmp (CI may clone there) keeps its writable overlay: it is bound
# aside, and back onto the same path in the new /tmp.
repo_under_tmp=false
case "$KERNEL_MATRIX_REPO/" in /tmp/*) repo_under_tmp=true ;; esac
if $repo_under_tmp; then
  mkdir -p /run/kernel-matrix-repo
  mount --bind "$KERNEL_MATRIX_REPO" /run/kernel-matrix-repo
fi
mount -t tmpfs -o mode=1777 tmpfs /tmp
if $repo_under_tmp; then
  mkdir -p "$KERNEL_MATRIX_REPO"
  mount --bind /run/kernel-matrix-repo "$KERNEL_MATRIX_REPO"
fi
mkdir -p /tmp/home
export HOME=/tmp/home TMPDIR=/tmp

mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug

# Headers, where the tree has them, go where a node with the headers package has them.
for headers in "$KERNEL_MATRIX_TREE"/usr/src/linux-headers-*; do
  [ -d "$headers" ] && ln -sfn "$headers" "/usr/src/${headers##*/}"
done

modprobe nf_conntrack
modprobe nf_nat
# The lab's rules and links; the kernel would also load most of these on first use.
for module in veth bridge nf_tables nft_chain_nat nft_ct nft_compat iptable_nat xt_statistic xt_MASQUERADE; do
  modprobe "$module" 2>/dev/null || say "module $module not loaded (not in this kernel?)"
done

export KERNEL_MATRIX_RESULTS="$shared/results"
mkdir -p "$KERNEL_MATRIX_RESULTS"
cd "$KERNEL_MATRIX_REPO"
say "running the command"
status=0
bash "$shared/command.sh" </dev/null || status=$?
echo "$status" >"$shared/exit-status"
sync
say "command exited with $status, $(cut -d' ' -f1 /proc/uptime) s since boot"
exit "$status"
