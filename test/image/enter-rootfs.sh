#!/usr/bin/env bash
# Starts a command in an image's root file system the way a container runtime starts a
# privileged container with the host's network and PID namespaces: the caller has already made a
# private mount namespace (`unshare --mount --propagation private`), so every mount made here
# vanishes with the last process in it, even if it is killed.
#
#   enter-rootfs.sh ROOT WORKDIR [--bind SRC DST ro|rw]... [--tmpfs DST SIZE]... [--env NAME=VALUE]... -- COMMAND...
#
# The command replaces this shell (exec): its pid is the one the caller started.
set -euo pipefail

root=$1 workdir=$2
shift 2

# Mount points are made in the container's own writable layer before the root turns read-only,
# as a runtime makes them before it starts the process.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
# Privileged: sysfs read-write.
mount -t sysfs sysfs "$root/sys"

environment=()
while [ $# -gt 0 ]; do
  case $1 in
    --bind)
      mkdir -p "$root$3"
      mount --rbind "$2" "$root$3"
      [ "$4" = ro ] && mount -o remount,bind,ro "$root$3"
      shift 4
      ;;
    --tmpfs)
      mkdir -p "$root$2"
      mount -t tmpfs -o "size=$3,mode=1777" tmpfs "$root$2"
      shift 3
      ;;
    --env)
      environment+=("$2")
      shift 2
      ;;
    --)
      shift
      break
      ;;
    *)
      echo "enter-rootfs: unknown argument $1" >&2
      exit 2
      ;;
  esac
done

# readOnlyRootFilesystem: only the volumes stay writable.
mount -o remount,bind,ro "$root"
exec chroot "$root" /usr/bin/env -i -C "$workdir" "${environment[@]}" "$@"
