#!/usr/bin/env bash
# The project's test command, on a fresh Debian 12 machine, as root: installs the system
# packages, the npm dependencies from package-lock.json, checks style and types, builds, runs `npm test` (unit tests, then the
# kernel tests in real network namespaces with real bpftrace), and fails if the kernel tests
# did not all run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh
# `npm install` rather than `npm ci`: npm 11 records only this platform's optional packages
# (e.g. @unrs/resolver-binding-linux-*) in the lock file, and `npm ci` then refuses it as out
# of sync. `npm install` installs exactly the locked versions and leaves the lock unchanged.
npm install --no-audit --no-fund
npm run lint
npm run typecheck
npm run build

rm -rf reports
npm test

node scripts/check-test-report.mjs reports/jest-unit.json reports/jest-kernel.json
