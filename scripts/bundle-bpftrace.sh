#!/usr/bin/env bash
# Debian 13's (trixie) bpftrace, with every library it links and their dynamic loader, in one
# directory that runs on Debian 12 without changing it: the container image ships it, and the
# tests fetch it to run the agent with it beside this machine's own bpftrace.
#
#   scripts/bundle-bpftrace.sh DIR VERSION
#
# DIR/bin/bpftrace runs it; DIR/root holds the unpacked packages. VERSION is trixie's version
# of the bpftrace package, e.g. 0.23.2-1: the Dockerfile's BPFTRACE_VERSION and the tests'
# NEWER_BPFTRACE_VERSION (test/kernels/newer-bpftrace.ts), which a unit test keeps equal. Why trixie's: its count()
# increments a map value in place where bookworm's 0.17 looks it up and writes it back, which
# is most of what the DNS-drop probe costs per packet in a drop storm (docs/benchmarks.md,
# section 4). Why bundled: trixie's bpftrace needs trixie's glibc and LLVM, which a Debian 12
# root must not be upgraded to; the bundled loader and --library-path keep them to this
# process. The packages come through an apt configuration of their own (the machine's sources,
# lists and package cache are never touched), verified with Debian's archive keyring.
set -euo pipefail

readonly dir=${1:?usage: scripts/bundle-bpftrace.sh DIR VERSION}
readonly version=${2:?usage: scripts/bundle-bpftrace.sh DIR VERSION}
readonly mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly keyring=/usr/share/keyrings/debian-archive-keyring.gpg
readonly libdir=usr/lib/x86_64-linux-gnu

log() { printf 'bundle-bpftrace: %s\n' "$*" >&2; }

[ -f "$keyring" ] || { log "error: no $keyring (package debian-archive-keyring)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
{
  echo "deb [signed-by=$keyring] $mirror trixie main"
  echo "deb [signed-by=$keyring] ${mirror%/debian}/debian-security trixie-security main"
} >"$work/sources.list"
apt_options=(
  -o "Dir::Etc::SourceList=$work/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o APT::Sandbox::User=root
)
log "trixie package lists"
apt-get "${apt_options[@]}" -qq update
# The package and its Depends and Pre-Depends, recursively; <virtual> names are provided by a
# real package of the list. Only bpftrace is pinned: the libraries follow trixie's security
# updates, as ca-certificates does in the image.
mapfile -t packages < <(
  apt-cache "${apt_options[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "bpftrace=$version" |
    grep -v -e '^ ' -e '^<' | sort -u | sed "s/^bpftrace\$/bpftrace=$version/"
)
log "downloading ${#packages[@]} packages"
(cd "$work/debs" && apt-get "${apt_options[@]}" -qq download "${packages[@]}")

rm -rf "$dir.partial"
mkdir -p "$dir.partial/root" "$dir.partial/bin" "$dir.partial/loader"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$dir.partial/root"; done
# Documentation, manual pages, translations and the packages' other programs are never run.
rm -rf "$dir.partial/root/usr/share/doc" "$dir.partial/root/usr/share/man" \
  "$dir.partial/root/usr/share/locale" "$dir.partial/root/usr/share/info" \
  "$dir.partial/root/usr/share/lintian"
find "$dir.partial/root/usr/bin" "$dir.partial/root/usr/sbin" -type f ! -name bpftrace -delete \
  2>/dev/null || true
# libbcc.so is BCC's own compiler, which alone links libclang-cpp (71 MB): bpftrace links only
# the same package's loader (libbcc_bpf.so) and compiles through libclang and libLLVM. Checked
# below: nothing bpftrace links may be missing.
rm -f "$dir.partial/root/$libdir"/libclang-cpp.so* "$dir.partial/root/$libdir"/libbcc.so*
missing=$("$dir.partial/root/$libdir/ld-linux-x86-64.so.2" --library-path "$dir.partial/root/$libdir" \
  --list "$dir.partial/root/usr/bin/bpftrace" | grep 'not found' || true)
[ -z "$missing" ] || { log "error: bpftrace misses libraries: $missing"; exit 1; }
# The loader runs under the name bpftrace: a process's name (comm, what ps shows) is the name of
# the file it executed.
ln -s "$dir/root/$libdir/ld-linux-x86-64.so.2" "$dir.partial/loader/bpftrace"
cat >"$dir.partial/bin/bpftrace" <<EOF
#!/bin/sh
# bpftrace $version (Debian trixie) with its own loader and libraries: scripts/bundle-bpftrace.sh
exec $dir/loader/bpftrace --library-path $dir/root/$libdir $dir/root/usr/bin/bpftrace "\$@"
EOF
chmod 755 "$dir.partial/bin/bpftrace"
# Complete or absent: an interrupted run leaves only DIR.partial, which the next run remakes.
rm -rf "$dir"
mv "$dir.partial" "$dir"
"$dir/bin/bpftrace" --version >&2
