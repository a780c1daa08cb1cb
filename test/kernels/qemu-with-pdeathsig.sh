#!/usr/bin/env bash
# The QEMU that the kernel matrix gives virtme-run: the same binary, but killed as soon as
# its parent (virtme-run) dies, so that a killed runner never leaves a guest running.
set -euo pipefail
exec setpriv --pdeathsig KILL -- qemu-system-x86_64 "$@"
