#!/usr/bin/env bash
# Runs a command with real pipes as its stdout and stderr. virtme-run reopens its standard
# streams through /proc/self/fd to check them, which fails on the sockets that Node gives a
# child for a piped stream ("not a valid pts").
set -euo pipefail
exec > >(exec cat) 2> >(exec cat >&2)
exec "$@"
