#!/usr/bin/env bash
# What the quick start presumes of the machine rather than installs: root, and the tools no
# Debian 12 repository ships in the version needed (Node.js 20: bookworm's nodejs is 18;
# kubectl: Debian has none). Names what is missing in one line and fails at once, before
# anything is installed.
#
#   scripts/check-presumptions.sh node [kubectl]
set -euo pipefail

fail() {
  echo "check-presumptions: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (apt-get, network namespaces, bpftrace)"

for presumption in "$@"; do
  case "$presumption" in
    node)
      command -v node >/dev/null || fail "Node.js 20 is required: no 'node' on PATH (Debian 12's own nodejs is 18; NodeSource ships 20)"
      major=$(node -p 'process.versions.node.split(".")[0]')
      [ "$major" -ge 20 ] || fail "Node.js 20 is required: 'node' is $(node --version)"
      command -v npm >/dev/null || fail "npm is required beside Node.js $(node --version): no 'npm' on PATH"
      ;;
    kubectl)
      command -v kubectl >/dev/null || fail "kubectl is required by the deploy tests (kubectl kustomize): no 'kubectl' on PATH"
      ;;
    *) fail "unknown presumption '$presumption'" ;;
  esac
done
