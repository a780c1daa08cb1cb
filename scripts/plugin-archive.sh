#!/usr/bin/env bash
# The release archive of the kubectl plugin and the krew manifest that ships it.
#
#   scripts/plugin-archive.sh [--out DIR] [--base-url URL]   build DIR/kubectl-conntrack_race-vVERSION.tar.gz
#                                                             and DIR/conntrack-race.yaml
#   scripts/plugin-archive.sh --check MANIFEST ARCHIVE        exit 1 unless MANIFEST may ship ARCHIVE
#
# The archive holds bin/kubectl-conntrack_race, dist/ (compiled here from src/), package.json
# and the production node_modules/, and is reproducible: names sorted, owner 0, every mtime the
# last commit's time (or SOURCE_DATE_EPOCH), gzip without a timestamp. The manifest is
# deploy/krew/conntrack-race.yaml with the archive's sha256 and, with --base-url, the URL the
# archive is published under; without it the manifest serves a local install:
# `kubectl krew install --manifest=DIR/conntrack-race.yaml --archive=DIR/kubectl-conntrack_race-vVERSION.tar.gz`.
# Needs node, npm (offline: it copies the installed node_modules) and the repository's
# devDependencies (tsc).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly template=deploy/krew/conntrack-race.yaml
readonly placeholder_sha=0000000000000000000000000000000000000000000000000000000000000000
readonly placeholder_host=RELEASE-BASE-URL.invalid

die() {
  printf 'plugin-archive: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '4,7s/^#   //p' "$0" >&2
  exit 2
}

# Every sha256 of MANIFEST must be the archive's, and no placeholder may be left in it.
check() {
  local manifest=$1 archive=$2 actual shas
  [ -f "$manifest" ] || die "no manifest $manifest"
  [ -f "$archive" ] || die "no archive $archive"
  actual=$(sha256sum "$archive" | cut -d' ' -f1)
  shas=$(sed -n "s/^ *sha256: *[\"']\{0,1\}\([0-9a-fA-F]*\)[\"']\{0,1\} *\$/\1/p" "$manifest")
  [ -n "$shas" ] || die "$manifest has no sha256"
  if grep -qx "$placeholder_sha" <<<"$shas"; then
    die "$manifest has the placeholder sha256: not shippable (build it with scripts/plugin-archive.sh)"
  fi
  while read -r sha; do
    [ "$sha" = "$actual" ] || die "$manifest says sha256 $sha; $archive is $actual"
  done <<<"$shas"
  if grep -q "$placeholder_host" "$manifest"; then
    die "$manifest has no release URL (--base-url): for a local install with --archive only"
  fi
  printf 'plugin-archive: %s ships %s (sha256 %s)\n' "$manifest" "$archive" "$actual"
}

stage=''
cleanup() { [ -z "$stage" ] || rm -rf "$stage"; }
trap cleanup EXIT

build() {
  local out=$1 base_url=$2 version epoch archive sha uri
  version=v$(node -p 'require("./package.json").version')
  grep -q "^  version: $version\$" "$template" ||
    die "$template does not say version: $version (package.json)"
  epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  stage=$(mktemp -d)

  install -D -m 0755 bin/kubectl-conntrack_race "$stage/bin/kubectl-conntrack_race"
  cp package.json "$stage/"
  node_modules/.bin/tsc -p tsconfig.build.json --outDir "$stage/dist"
  # The production dependencies as npm resolved them here (no registry needed). npm ls also
  # exits 1 for an extraneous package elsewhere in the tree: its list is what counts. It may
  # print real paths when node_modules is a link.
  local modules dirs dir rel
  modules=$(cd node_modules && pwd -P)
  dirs=$(npm ls --omit=dev --parseable --all 2>/dev/null | tail -n +2 || true)
  [ -n "$dirs" ] || die "npm ls found no production dependencies (run npm ci first)"
  while read -r dir; do
    case $dir in
      "$modules"/*) rel=node_modules/${dir#"$modules/"} ;;
      "$PWD"/*) rel=${dir#"$PWD/"} ;;
      *) die "a dependency outside node_modules: $dir" ;;
    esac
    mkdir -p "$stage/$(dirname "$rel")"
    cp -a "$rel" "$stage/$rel"
  done <<<"$dirs"
  # Nested copies of a package inside an already copied one are copied twice: harmless. Source
  # maps and type declarations are never read when the plugin runs.
  find "$stage" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete

  archive=$out/kubectl-conntrack_race-$version.tar.gz
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode='u+rw,go-w' \
    -C "$stage" -cf - bin dist node_modules package.json | gzip -n -9 >"$archive"
  sha=$(sha256sum "$archive" | cut -d' ' -f1)
  uri=https://$placeholder_host/$(basename "$archive")
  [ -n "$base_url" ] && uri=${base_url%/}/$(basename "$archive")
  sed -e "s|$placeholder_sha|$sha|" -e "s|^\( *uri: \).*|\1$uri|" \
    -e '/^# krew plugin manifest/,/^# manifest with the placeholder/d' "$template" >"$out/conntrack-race.yaml"
  printf 'plugin-archive: %s (%s KB, sha256 %s)\n' "$archive" "$(($(stat -c %s "$archive") / 1024))" "$sha"
  printf 'plugin-archive: %s\n' "$out/conntrack-race.yaml"
}

main() {
  local out=plugin-release base_url=''
  if [ "${1:-}" = --check ]; then
    [ $# -eq 3 ] || usage
    check "$2" "$3"
    return
  fi
  while [ $# -gt 0 ]; do
    case $1 in
      --out)
        [ $# -ge 2 ] || usage
        out=$2
        shift
        ;;
      --base-url)
        [ $# -ge 2 ] || usage
        base_url=$2
        shift
        ;;
      *) usage ;;
    esac
    shift
  done
  build "$out" "$base_url"
}

main "$@"
