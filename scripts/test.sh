#!/usr/bin/env bash
# The project's test command, on a fresh Debian 12 machine, as root: installs the system
# packages, the npm dependencies from package-lock.json, checks style and types, builds, runs
# `npm test` (unit tests, then the kernel tests in real network namespaces with real bpftrace),
# and fails if the kernel tests did not all run. Presumes Node.js 20 and kubectl (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/check-presumptions.sh node kubectl
scripts/install-system-deps.sh

# The complete lock (every platform's optional packages) is committed: npm ci installs exactly it.
npm ci --no-audit --no-fund
npm run lint
npm run typecheck
npm run build

rm -rf reports
npm test

node scripts/check-test-report.mjs reports/jest-unit.json reports/jest-kernel.json
