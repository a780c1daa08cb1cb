#!/usr/bin/env bash
# A live demo on one machine, no Kubernetes: builds the agent, starts the lab (a "node"
# network namespace with two "pods" that race through SNAT twice a second) and runs the
# agent watching it. Every few seconds it prints what the agent counted next to what the
# kernel counted. Stops after DEMO_SECONDS (default 60) or on Ctrl-C, and removes the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${DEMO_SECONDS:-60}
port=${DEMO_PORT:-9474}

scripts/install-system-deps.sh
npm ci --no-audit --no-fund
npm run --silent build

workdir=$(mktemp -d)
lab_pid='' agent_pid=''
cleanup() {
  trap - EXIT INT TERM
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$lab_pid" ] && kill -TERM "$lab_pid" 2>/dev/null && wait "$lab_pid" 2>/dev/null
  rm -rf "$workdir"
  echo "demo: stopped; lab removed"
}
trap cleanup EXIT INT TERM

mkfifo "$workdir/lab"
node --import tsx test/lab/cli.ts snat-race --loop --interval-ms 500 --json >"$workdir/lab" &
lab_pid=$!
exec 3<"$workdir/lab"
read -r ready <&3
node_pid=$(node -e 'console.log(JSON.parse(process.argv[1]).nodeNetnsPid)' "$ready")
cat <&3 >/dev/null &
echo "demo: lab up (node namespace of pid $node_pid); pods race through SNAT twice a second"

node dist/main.js --listen "127.0.0.1:$port" --netns-pid "$node_pid" --poll-interval 1 \
  >"$workdir/agent.log" 2>&1 &
agent_pid=$!
until curl -sf "127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$agent_pid" 2>/dev/null || { cat "$workdir/agent.log"; exit 1; }
  sleep 0.5
done
echo "demo: agent ready: http://127.0.0.1:$port/metrics"
echo "demo: a race event as the agent logs it:"

shown=0
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
  sleep 5
  if [ "$shown" -eq 0 ] && grep -q '"kind":"insert_failed"' "$workdir/agent.log"; then
    grep -m1 '"kind":"insert_failed"' "$workdir/agent.log"
    shown=1
  fi
  metrics=$(curl -sf "127.0.0.1:$port/metrics")
  agent=$(awk '/^conntrack_observer_insert_failures_total/ {s += $NF} END {print s + 0}' <<<"$metrics")
  kernel=$(awk '/^conntrack_observer_kernel_conntrack_insert_failed_total/ {print $NF}' <<<"$metrics")
  unexplained=$(awk '/^conntrack_observer_unexplained_insert_failures_total/ {print $NF}' <<<"$metrics")
  printf 'demo: agent counted %s insert failures (race="snat"); kernel insert_failed %s; unexplained %s\n' \
    "$agent" "${kernel:-?}" "${unexplained:-?}"
done
