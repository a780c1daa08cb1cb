#!/usr/bin/env bash
# shellcheck disable=SC2317 # run through stage(), functions look unreachable to shellcheck
# The README's quick start on a fresh machine, for real: makes a clean Debian 12 (bookworm) root
# with debootstrap, gives it only what the README presumes of a machine (Node.js 20, kubectl,
# the machine's CA certificates), clones the commit under test into it and runs there, as root
# and exactly as the README says, `scripts/demo.sh` and then `scripts/test.sh`. A package the
# project's own scripts forget to install fails here, however much the machine running this
# happens to have installed. CI runs it; a developer can too (root, debootstrap, git):
#
#   scripts/clean-root.sh        # tests the commit checked out (HEAD), not uncommitted changes
#
# Environment:
#   CLEAN_ROOT_CACHE         cache directory (default /var/cache/conntrack-race-observer): the
#                            debootstrap result as a tarball, apt's downloaded packages, npm's
#                            cache. All are checked on use (apt and npm verify every hash).
#   CLEAN_ROOT_MAX_AGE_DAYS  make the root afresh when the cached one is older (default 7)
#   CLEAN_ROOT_REFRESH=1     make the root afresh now
#   CLEAN_ROOT_MIRROR        Debian mirror (default http://deb.debian.org/debian)
#   CLEAN_ROOT_LOCK          lock file held while the demo and the tests run (default
#                            /tmp/host-kernel.lock; empty: none, for a caller that holds it):
#                            their probes see every network namespace of the machine, so
#                            whatever else runs a lab here must take it too
#   DEMO_SECONDS             how long the demo races (default 40)
#
# The root lives on a tmpfs (about 2 GB of memory while it runs) in a private mount namespace:
# every mount made for it (the root itself, /proc, /sys, /dev, tracefs, the caches) vanishes with
# this script, even if it is killed; the host's mount table never sees them.
set -euo pipefail

script=$(readlink -f "$0")
cache=${CLEAN_ROOT_CACHE:-/var/cache/conntrack-race-observer}
max_age_days=${CLEAN_ROOT_MAX_AGE_DAYS:-7}
mirror=${CLEAN_ROOT_MIRROR:-http://deb.debian.org/debian}
lock_file=${CLEAN_ROOT_LOCK-/tmp/host-kernel.lock}
demo_seconds=${DEMO_SECONDS:-40}
suite=bookworm
project_dir=/root/conntrack-race-observer # the clone, inside the root

log() { printf 'clean-root: %s\n' "$*"; }
fail() {
  printf 'clean-root: %s\n' "$*" >&2
  exit 1
}
minutes() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# Runs one stage under a header and reports its duration; the whole run stops at a failure.
stage_durations=()
stage() {
  local title=$1 started=$SECONDS status
  shift
  printf '\n======== %s ========\n' "$title"
  set +e
  (
    set -e
    "$@"
  )
  status=$?
  set -e
  local took
  took=$(minutes $((SECONDS - started)))
  if [ "$status" -ne 0 ]; then
    printf '======== %s: FAILED (exit %d) after %s ========\n' "$title" "$status" "$took"
    exit "$status"
  fi
  printf '======== %s: passed in %s ========\n' "$title" "$took"
  stage_durations+=("$(printf '%-44s %s' "$title" "$took")")
}

# Prefixes every line with the wall-clock time, so the log shows where the minutes go.
timestamped() {
  local line
  while IFS= read -r line; do printf '%(%H:%M:%S)T %s\n' -1 "$line"; done
}

# ---------------------------------------------------------------------------------------------
# Outside: checks, then the rest in a private mount namespace.

host_main() {
  [ "$(id -u)" -eq 0 ] || fail "must run as root (debootstrap, mount, chroot)"
  # shellcheck source=scripts/lib/ensure-packages.sh
  . "$(dirname "$script")/lib/ensure-packages.sh"
  ensure_packages clean-root debootstrap util-linux git
  local tool
  for tool in debootstrap unshare chroot flock git; do
    command -v "$tool" >/dev/null || fail "'$tool' is required (apt-get install debootstrap util-linux git)"
  done
  # What the root is given of this machine must exist here first.
  command -v node >/dev/null || fail "Node.js 20 is required on this machine to copy into the root: no 'node' on PATH"
  [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] ||
    fail "Node.js 20 is required on this machine to copy into the root: 'node' is $(node --version)"
  command -v kubectl >/dev/null || fail "kubectl is required on this machine to copy into the root: no 'kubectl' on PATH"

  local repo commit
  repo=$(git -C "$(dirname "$script")" rev-parse --show-toplevel)
  commit=$(git -C "$repo" rev-parse HEAD)
  if [ -n "$(git -C "$repo" status --porcelain)" ]; then
    log "warning: $repo has uncommitted changes; they are not tested (only commit $commit is)"
  fi

  local status=0 inside
  workdir=$(mktemp -d /tmp/clean-root.XXXXXX)
  # The mounts are gone with the namespace; what is left here is an empty mount point.
  trap 'rm -rf "$workdir"' EXIT
  unshare --mount --propagation private -- "$script" --in-private-mounts "$workdir" "$repo" "$commit" &
  inside=$!
  # On INT/TERM, the inside cleans up first: removing the mount point beneath it would detach
  # its mounts while it still tears the lab down.
  trap 'kill -TERM "$inside" 2>/dev/null || true' INT TERM
  while kill -0 "$inside" 2>/dev/null; do
    status=0
    wait "$inside" || status=$?
  done
  if grep -qF " $workdir" /proc/mounts; then
    fail "mounts of $workdir are still in this machine's mount table"
  fi
  return "$status"
}

# ---------------------------------------------------------------------------------------------
# Inside the private mount namespace.

# The environment of a fresh machine's root shell, plus what the machine kind sets up for TLS
# (its registry connections are re-signed by a CA it trusts) and CI's own flag.
root_environment() {
  local name
  printf '%s\n' HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  for name in NODE_EXTRA_CA_CERTS SSL_CERT_FILE CI http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!name:-}" ]; then printf '%s=%s\n' "$name" "${!name}"; fi
  done
}

# Runs a command in the root, in the clone, with the fresh machine's environment only. The lock's
# descriptor is closed so that nothing left running inside could hold the lock.
in_root() {
  local environment
  mapfile -t environment < <(root_environment)
  chroot "$root" /usr/bin/env -i "${environment[@]}" "$@" </dev/null 9>&-
}

make_root() {
  local arch tarball age_days
  arch=$(dpkg --print-architecture)
  tarball="$cache/root-$suite-minbase-$arch.tar.gz"
  mkdir -p "$cache"
  if [ -f "$tarball" ] && [ "${CLEAN_ROOT_REFRESH:-0}" != 1 ]; then
    age_days=$((($(date +%s) - $(stat -c %Y "$tarball")) / 86400))
    if [ "$age_days" -lt "$max_age_days" ]; then
      log "unpacking the cached $suite root ($tarball, $age_days days old)"
      tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpzf "$tarball"
      return
    fi
  fi
  # minbase: the fewest packages a Debian system has (Essential, apt); what the scripts work
  # with there, they work with on any Debian 12 machine.
  log "debootstrap --variant=minbase $suite from $mirror"
  if ! debootstrap --variant=minbase --arch="$arch" "$suite" "$root" "$mirror" >"$logs/debootstrap.log" 2>&1; then
    tail -30 "$logs/debootstrap.log"
    fail "debootstrap failed"
  fi
  # Cached as debootstrap made it, before anything below changes it.
  tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' --one-file-system \
    --use-compress-program='gzip -1' -cpf "$tarball.$$" .
  mv "$tarball.$$" "$tarball"
  log "cached the root as $tarball ($(du -h "$tarball" | cut -f1))"
}

# What a fresh Debian 12 machine of the README's kind has that debootstrap does not give.
provision_root() {
  # A chroot has no init: package scripts would start their daemons (Debian's prometheus
  # package starts its server) as processes of this machine, outliving the root. Exit code 101
  # of policy-rc.d is "action forbidden", which invoke-rc.d and deb-systemd-invoke obey.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOF
  cat /etc/resolv.conf >"$root/etc/resolv.conf"
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

  # Node.js 20 as NodeSource lays it out: node, and npm and corepack as global packages.
  local node_prefix module
  node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  cp "$node_prefix/bin/node" "$root/usr/bin/node"
  mkdir -p "$root/usr/lib/node_modules"
  for module in npm corepack; do
    if [ -d "$node_prefix/lib/node_modules/$module" ]; then
      cp -a "$node_prefix/lib/node_modules/$module" "$root/usr/lib/node_modules/"
    fi
  done
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
  if [ -d "$root/usr/lib/node_modules/corepack" ]; then
    ln -s ../lib/node_modules/corepack/dist/corepack.js "$root/usr/bin/corepack"
  fi
  # kubectl: no Debian repository ships it; the README presumes it for the deploy tests.
  cp "$(readlink -f "$(command -v kubectl)")" "$root/usr/local/bin/kubectl"
  # The CA certificates this machine trusts, where its environment points: the bundle, and the
  # extra CA itself, so that a ca-certificates package installed later keeps it in the bundle.
  local name file
  for name in NODE_EXTRA_CA_CERTS SSL_CERT_FILE; do
    file=${!name:-}
    if [ -n "$file" ] && [ -f "$file" ]; then
      mkdir -p "$root$(dirname "$file")"
      cp "$file" "$root$file"
    fi
  done
  if [ -d /usr/local/share/ca-certificates ]; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
  fi

  # The kernel's file systems. /sys without its submounts: a fresh machine has no tracefs
  # mounted, and scripts/install-system-deps.sh must mount it.
  mount -t proc proc "$root/proc"
  mount --bind /sys "$root/sys"
  mount --rbind /dev "$root/dev"
  # Caches that only save downloads: apt and npm check every file against its hash.
  mkdir -p "$cache/apt-archives/partial" "$cache/npm" "$root/root/.npm"
  mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
  mount --bind "$cache/npm" "$root/root/.npm"

  git clone --quiet --no-checkout "$repo" "$root$project_dir"
  git -C "$root$project_dir" checkout --quiet --detach "$commit"
  log "cloned $commit into $project_dir"
  log "in the root: node $(in_root node --version), npm $(in_root npm --version)," \
    "$(in_root kubectl version --client 2>/dev/null | head -1)"
}

# Runs one of the README's commands in the root, as the README says, its output in the log.
readme_command() {
  local output=$1
  shift
  in_root /usr/bin/env -C "$project_dir" "$@" 2>&1 | timestamped | tee "$output"
}

# Processes whose root directory is the clean root. Compared by device and inode, not by path:
# a process of `ip netns exec` has a mount namespace of its own, where the path reads otherwise.
root_processes() {
  local pid root_id
  root_id=$(stat -c %d:%i "$root" 2>/dev/null) || return 0
  for pid in /proc/[0-9]*; do
    if [ "$(stat -Lc %d:%i "$pid/root" 2>/dev/null)" = "$root_id" ]; then echo "${pid#/proc/}"; fi
  done
}

# Fails if a command left something behind: processes in the root, named network namespaces,
# files git sees in the clone.
check_left_behind() {
  local after=$1 pid leftovers=() status
  for pid in $(root_processes); do
    leftovers+=("$pid:$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)")
  done
  if [ "${#leftovers[@]}" -gt 0 ]; then
    printf 'clean-root: left running by %s: %s\n' "$after" "${leftovers[@]}" >&2
    kill_root_processes
    return 1
  fi
  if [ -n "$(ls -A "$root/run/netns" 2>/dev/null)" ]; then
    fail "network namespaces left by $after: $(ls "$root/run/netns")"
  fi
  status=$(git -C "$root$project_dir" status --porcelain --untracked-files=all)
  [ -z "$status" ] || fail "files left by $after that git sees:"$'\n'"$status"
  log "$after left nothing behind (no process, no network namespace, git status clean)"
}

# The demo must have counted real races, and exactly what the kernel counted.
check_demo_counted_races() {
  local result agent kernel
  result=$(grep -o 'demo: result: .*' "$logs/demo.log" | tail -1)
  [ -n "$result" ] || fail "the demo printed no result line"
  agent=$(sed -n 's/.*the agent counted \([0-9]*\) insert failures.*/\1/p' <<<"$result")
  kernel=$(sed -n 's/.*and the kernel \([0-9]*\),.*/\1/p' <<<"$result")
  if [ -z "$agent" ] || [ -z "$kernel" ]; then fail "cannot read the demo's result: $result"; fi
  [ "$agent" -ge 1 ] || fail "the demo counted no race: $result"
  [ "$agent" -eq "$kernel" ] || fail "the demo's agent count $agent differs from the kernel's $kernel"
  log "the demo counted $agent races, as many as the kernel's insert_failed rose by"
}

run_demo() {
  readme_command "$logs/demo.log" "DEMO_SECONDS=$demo_seconds" scripts/demo.sh
  check_demo_counted_races
  check_left_behind scripts/demo.sh
}

run_tests() {
  readme_command "$logs/test.log" scripts/test.sh
  check_left_behind scripts/test.sh
}

# SIGTERM first, so that a demo or a test run stopped midway removes its lab; SIGKILL what is
# still there after 10 s.
kill_root_processes() {
  local pid deadline=$((SECONDS + 10))
  for pid in $(root_processes); do kill -TERM "$pid" 2>/dev/null || true; done
  while [ -n "$(root_processes)" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  for pid in $(root_processes); do kill -KILL "$pid" 2>/dev/null || true; done
}

inside_main() {
  workdir=$1 repo=$2 commit=$3
  root=$workdir/root logs=$workdir/logs
  # Everything of the run lives on this tmpfs, so that it all goes with the namespace.
  mount -t tmpfs -o mode=755 tmpfs "$workdir"
  mkdir -p "$root" "$logs"
  # The root must be a mount point of its own, as / is on a machine: `ip netns exec` makes /
  # a slave mount, which fails (EINVAL) on a plain directory.
  mount --bind "$root" "$root"
  trap 'kill_root_processes; umount -R -l "$workdir" 2>/dev/null || true' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  local started=$SECONDS

  stage "debian $suite root (debootstrap or cache)" make_root
  stage "what the README presumes of a machine" provision_root

  if [ -n "$lock_file" ]; then
    exec 9>>"$lock_file"
    log "waiting for $lock_file (no other lab may run on this machine meanwhile)"
    local waited=$SECONDS
    flock -w 1800 9 || fail "$lock_file was not free within 30 minutes"
    log "holding $lock_file (waited $(minutes $((SECONDS - waited))))"
  fi
  stage "scripts/demo.sh (DEMO_SECONDS=$demo_seconds)" run_demo
  stage "scripts/test.sh" run_tests
  if [ -n "$lock_file" ]; then exec 9>&-; fi

  printf '\n======== clean root: passed, commit %s, in %s ========\n' "$commit" "$(minutes $((SECONDS - started)))"
  printf '  %s\n' "${stage_durations[@]}"
  log "the root came to $(df -h --output=used "$workdir" | tail -1 | tr -d ' ') (tmpfs, memory while it ran)"
}

# Exits from inside the `if`, which bash parses whole before it runs it: bash reads a script
# while it runs it, and must never read on into an edit made to this file meanwhile.
if [ "${1:-}" = --in-private-mounts ]; then
  shift
  inside_main "$@"
  exit
else
  host_main "$@"
  exit
fi
