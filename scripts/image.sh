#!/usr/bin/env bash
# Builds the container image from the Dockerfile, and runs it as the DaemonSet would beside the
# lab (see test/image/run-as-daemonset.ts). As root, on Debian 12.
#
#   scripts/image.sh build [--rebuild-base]   build, check bpftrace inside, print size and parts
#   scripts/image.sh test  [--rebuild-base]   build, then run it against the lab and check it
#
# With a Docker engine (`docker info` answers) the image is built with `docker build`; otherwise
# with buildah. Where the pinned node base cannot be pulled (no registry reachable), an
# equivalent base is made from Debian packages: a minimal bookworm root with this machine's
# Node.js in the official image's layout. It is cached as a local image; --rebuild-base remakes
# it. The image itself is always rebuilt (buildah's layer cache makes an unchanged step free).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly image=localhost/conntrack-race-observer:test
readonly node_version=20.20.2
readonly pinned_base=docker.io/library/node:20.20.2-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0
readonly local_base=localhost/conntrack-race-observer-base:node-${node_version}-bookworm-slim
readonly debian_mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Outbound TLS may be re-signed by a CA this machine trusts: npm inside the build gets this bundle
# as a build secret, which is in no layer of any stage.
readonly host_lock=/tmp/host-kernel.lock
readonly ca_bundle=${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

log() { printf 'image: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/ensure-packages.sh
. scripts/lib/ensure-packages.sh
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '5,6s/^#   //p' "$0" >&2
  exit 2
}

have_docker_engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

# Containers and mounts this run made, removed on exit whatever happens.
work_containers=()
work_dirs=()
cleanup() {
  local container dir
  for container in "${work_containers[@]}"; do
    buildah umount "$container" >/dev/null 2>&1 || true
    buildah rm "$container" >/dev/null 2>&1 || true
  done
  for dir in "${work_dirs[@]}"; do
    # A debootstrap root has /proc and /sys mounted while it runs: never delete through a mount.
    findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf --one-file-system "$dir"
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A working container of an image, removed on exit; its id in $container.
container=''
new_container() {
  container=$(buildah from --pull-never "$1")
  work_containers+=("$container")
}

# The official image's layout: /usr/local/bin/node, npm and corepack under
# /usr/local/lib/node_modules with their links in /usr/local/bin, the headers under
# /usr/local/include/node, a `node` user with uid 1000, and Debian's slim image's dpkg excludes.
make_local_base() {
  local host_node host_modules rootfs
  host_node=$(command -v node)
  host_modules=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")/..
  [ "$(node --version)" = "v$node_version" ] ||
    die "the pinned base has Node.js $node_version; this machine has $(node --version)"
  ensure_packages image debootstrap

  rootfs=$(mktemp -d /var/tmp/image-base.XXXXXX)
  work_dirs+=("$rootfs")
  log "making the base $local_base (debootstrap bookworm minbase + Node.js $node_version)"
  work_dirs+=("$rootfs.log")
  debootstrap --variant=minbase bookworm "$rootfs" "$debian_mirror" >"$rootfs.log" 2>&1 ||
    { cat "$rootfs.log" >&2; die "debootstrap failed"; }
  rm -f "$rootfs.log"

  # What debian:bookworm-slim does to a fresh root (debuerreotype --slimify): no documentation,
  # manual pages or translations, now or for packages installed later; no apt lists or caches.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,info,groff,linda,locale}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$debian_mirror" "$debian_mirror" >"$rootfs/etc/apt/sources.list"
  : >"$rootfs/etc/resolv.conf"

  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  install -D -m 0755 "$host_node" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules" "$rootfs/usr/local/include"
  cp -a "$host_modules/npm" "$host_modules/corepack" "$rootfs/usr/local/lib/node_modules/"
  [ -d /usr/include/node ] && cp -a /usr/include/node "$rootfs/usr/local/include/node"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  ln -s ../lib/node_modules/corepack/dist/corepack.js "$rootfs/usr/local/bin/corepack"
  chroot "$rootfs" /usr/local/bin/node --version >/dev/null

  container=$(buildah from scratch)
  work_containers+=("$container")
  cp -a "$rootfs/." "$(buildah mount "$container")/"
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$node_version" --cmd node \
    --label org.opencontainers.image.description="local stand-in for node:$node_version-bookworm-slim" \
    "$container"
  buildah commit --quiet "$container" "$local_base" >/dev/null
}

# The base the Dockerfile builds on: the pinned one where it can be pulled, else the local one.
choose_base() {
  local rebuild_base=$1
  if buildah inspect --type image "$pinned_base" >/dev/null 2>&1 ||
    timeout 60 buildah pull --quiet "$pinned_base" >/dev/null 2>&1; then
    log "base: $pinned_base"
    return
  fi
  if [ "$rebuild_base" = yes ] || ! buildah inspect --type image "$local_base" >/dev/null 2>&1; then
    local started=$SECONDS
    # The layer cache of builds on an older base can never be used again.
    buildah rmi --prune >/dev/null 2>&1 || true
    make_local_base
    log "made the base in $((SECONDS - started)) s"
  else
    log "base: $local_base (cached; --rebuild-base remakes it)"
  fi
  base_build_arg=(--build-arg "NODE_IMAGE=$local_base")
}

base_build_arg=()
build_image() {
  local rebuild_base=$1 revision created
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  created=$(git log -1 --format=%cI 2>/dev/null || echo unknown)
  local labels=(--build-arg "REVISION=$revision" --build-arg "CREATED=$created")
  if have_docker_engine; then
    log "building with docker build"
    DOCKER_BUILDKIT=1 docker build --quiet --tag "$image" --secret "id=build-ca,src=$ca_bundle" \
      "${labels[@]}" . >/dev/null
    return
  fi
  ensure_packages image buildah
  choose_base "$rebuild_base"
  log "building with buildah bud"
  local started=$SECONDS
  # chroot isolation: the OCI runtimes cannot start containers here (setrlimit is refused).
  buildah bud --quiet --isolation chroot --layers --force-rm --pull-never --tag "$image" \
    --secret "id=build-ca,src=$ca_bundle" "${base_build_arg[@]}" "${labels[@]}" . >/dev/null
  log "buildah bud took $((SECONDS - started)) s"
}

# Runs a command inside the image's root without any host mount (no privileges needed).
in_image() {
  if have_docker_engine; then
    docker run --rm --network none --entrypoint "$1" "$image" "${@:2}"
  else
    chroot "$image_root" "$@"
  fi
}

image_root=''
mount_image() {
  new_container "$image"
  image_root=$(buildah mount "$container")
}

# Unpacked size and what makes it up, in MB.
report_size() {
  local total llvm node modules share
  if have_docker_engine; then
    total=$(($(docker image inspect --format '{{.Size}}' "$image") / 1000000))
    log "size: ${total} MB (docker image inspect)"
    return
  fi
  total=$(du -smx "$image_root" | cut -f1)
  llvm=$(du -sm "$image_root/opt/bpftrace" | cut -f1)
  node=$(du -sm "$image_root/usr/local/bin/node" | cut -f1)
  modules=$(du -sm "$image_root/app/node_modules" | cut -f1)
  share=$(du -sm "$image_root/usr/share" | cut -f1)
  image_size_mb=$total
  printf 'image: %s: %s MB unpacked: bpftrace with its libraries (LLVM, clang, z3, glibc) %s MB, node %s MB, node_modules %s MB, /usr/share %s MB, the rest %s MB\n' \
    "$image" "$total" "$llvm" "$node" "$modules" "$share" "$((total - llvm - node - modules - share))"
}

# Nothing bpftrace links may be missing, and it must compile (through clang and LLVM, reading a
# kernel type from BTF) and attach a probe in the image. bpftrace loads programs into the host's
# kernel: under the host lock, like every other bpftrace run.
# shellcheck disable=SC2016 # a bpftrace program: its $ are bpftrace's
readonly bpftrace_check='tracepoint:skb:kfree_skb { $skb = (struct sk_buff *)args->skbaddr; @len = $skb->len; }
interval:ms:200 { printf("bpftrace runs\n"); exit(); }'
readonly bundle_libraries=/opt/bpftrace/root/usr/lib/x86_64-linux-gnu
check_bpftrace() {
  local missing output
  # Debian 13's bpftrace with its own loader and libraries (scripts/bundle-bpftrace.sh).
  missing=$(in_image /opt/bpftrace/loader/bpftrace --library-path "$bundle_libraries" \
    --list /opt/bpftrace/root/usr/bin/bpftrace | grep 'not found' || true)
  [ -z "$missing" ] || die "bpftrace in the image misses libraries: $missing"
  if have_docker_engine; then
    output=$(flock "$host_lock" docker run --rm --privileged --entrypoint bpftrace "$image" \
      -e "$bpftrace_check" 2>&1 || true)
  else
    # shellcheck disable=SC2016 # expanded by the inner shell
    output=$(flock "$host_lock" unshare --mount --propagation private -- sh -euc '
      mount -t proc proc "$1/proc"
      mount --rbind /sys "$1/sys"
      mount --rbind /dev "$1/dev"
      exec chroot "$1" timeout 60 bpftrace -e "$2"
    ' sh "$image_root" "$bpftrace_check" 2>&1 || true)
  fi
  grep -q 'bpftrace runs' <<<"$output" || die "bpftrace does not run a probe in the image: $output"
  log "bpftrace: every library resolves; a BTF-typed tracepoint probe compiled and ran inside the image"
}

# podman where it can start a container (here it cannot: setrlimit is refused), else the image's
# own root file system under a private mount namespace and chroot.
container_runtime() {
  if have_docker_engine; then
    echo docker
  elif command -v podman >/dev/null &&
    podman run --rm --network none --entrypoint /bin/true "$image" >/dev/null 2>&1; then
    echo podman
  else
    echo chroot
  fi
}

cmd_test() {
  local rebuild_base=$1 runtime config started=$SECONDS
  cmd_build "$rebuild_base"
  scripts/install-system-deps.sh >/dev/null
  [ -x node_modules/.bin/tsx ] || npm ci --no-audit --no-fund
  config=$(mktemp /tmp/image-config.XXXXXX.json)
  work_dirs+=("$config")
  if have_docker_engine; then
    docker image inspect --format '{{json .Config}}' "$image" >"$config"
  else
    buildah inspect --type image "$image" |
      node -e 'let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () =>
        process.stdout.write(JSON.stringify(JSON.parse(s).OCIv1.config)))' >"$config"
  fi
  runtime=$(container_runtime)
  local target=(--image "$image")
  if [ "$runtime" = chroot ]; then
    mount_image
    target=(--rootfs "$image_root")
  fi
  log "running the image as the DaemonSet would ($runtime) beside the lab"
  local status=0 lock_fd waited=$SECONDS
  exec {lock_fd}>>"$host_lock"
  flock "$lock_fd"
  log "host lock taken after $((SECONDS - waited)) s"
  node --import tsx test/image/run-as-daemonset.ts \
    --runtime "$runtime" "${target[@]}" --image-config "$config" || status=$?
  flock -u "$lock_fd"
  if [ "$status" -ne 0 ]; then
    log "FAILED after $((SECONDS - started)) s"
    exit "$status"
  fi
  log "passed in $((SECONDS - started)) s; image ${image_size_mb} MB unpacked"
}

# The build CA is given to npm as a build secret: neither the image's configuration nor any of
# its files may hold it (Debian's own bundle in the image lacks this machine's extra CAs).
check_no_build_ca() {
  local cert line
  if buildah inspect --type image "$image" | grep -qE 'build-ca|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE'; then
    die "the image's configuration mentions the build CA"
  fi
  for cert in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$cert" ] || continue
    line=$(sed -n 2p "$cert")
    if grep -rqsF -- "$line" "$image_root"/{etc,usr/local,app,root,run,tmp,var}; then
      die "the image holds the build CA $cert"
    fi
  done
  log "no build CA in the image's configuration or files"
}

# `doctor --reproduce` runs the race generators from the image, the agent page-out; each prints
# its usage and exits 2 without arguments, which proves it is there, executable and links
# against the image's libraries.
check_generators() {
  local generator status
  for generator in snat-race dnat-clash page-out; do
    status=0
    in_image "/usr/local/lib/conntrack-race-observer/$generator" >/dev/null 2>&1 || status=$?
    [ "$status" -eq 2 ] || die "$generator does not run in the image (exit $status)"
  done
  log "race generators of doctor --reproduce and page-out: present and runnable"
}

image_size_mb=''
cmd_build() {
  local rebuild_base=$1 started=$SECONDS
  build_image "$rebuild_base"
  log "built $image in $((SECONDS - started)) s"
  have_docker_engine || mount_image
  have_docker_engine || check_no_build_ca
  check_bpftrace
  check_generators
  report_size
}

main() {
  local command=${1:-} rebuild_base=no
  [ $# -gt 0 ] && shift
  while [ $# -gt 0 ]; do
    case $1 in
      --rebuild-base) rebuild_base=yes ;;
      *) usage ;;
    esac
    shift
  done
  [ "$(id -u)" -eq 0 ] || die "must run as root (buildah, mounts, the lab)"
  case $command in
    build) cmd_build "$rebuild_base" ;;
    test) cmd_test "$rebuild_base" ;;
    *) usage ;;
  esac
}

main "$@"
