#!/usr/bin/env bash
# A live demo on one machine, no Kubernetes: builds the agent, starts the lab (a "node"
# network namespace with two "pods" that race through SNAT twice a second) and runs the
# agent watching it. Every few seconds it prints what the agent counted next to what the
# kernel counted. After DEMO_SECONDS (default 60) of racing, and once at least one race was
# counted (racing on for at most DEMO_EXTRA_SECONDS, default 120, more), it pauses the pods,
# compares the agent's count with the kernel's exactly, prints the result and removes the lab.
# Exits non-zero if no race happened or the counts differ. Ctrl-C stops it early.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${DEMO_SECONDS:-60}
extra_seconds=${DEMO_EXTRA_SECONDS:-120}
port=${DEMO_PORT:-9474}

scripts/check-presumptions.sh node
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

fail() {
  echo "demo: $*" >&2
  exit 1
}

# Waits (at most 30 s) until the lab has printed `{"event":"<name>"}` COUNT times in all.
wait_for_lab_event() {
  local name=$1 count=$2 deadline=$((SECONDS + 30))
  until [ "$(grep -c "\"event\":\"$name\"" "$workdir/lab-events")" -ge "$count" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the lab did not report '$name' within 30 s"
    kill -0 "$lab_pid" 2>/dev/null || fail "the lab exited"
    sleep 0.2
  done
}

agent_count() {
  curl -sf "127.0.0.1:$port/metrics" |
    awk '/^conntrack_observer_insert_failures_total/ {s += $NF} END {print s + 0}'
}

# The kernel's own count, read apart from the agent: conntrack -S in the node namespace.
kernel_count() {
  nsenter --net="/proc/$node_pid/ns/net" conntrack -S |
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^insert_failed=/) {split($i, f, "="); s += f[2]}}
         END {print s + 0}'
}

# With the pods paused, waits until both counts have stood still for two readings a second
# apart (probe events reach the agent a little after the kernel counts them); sets
# settled_agent and settled_kernel.
settle_counts() {
  local agent kernel previous='' deadline=$((SECONDS + 20))
  while [ "$SECONDS" -lt "$deadline" ]; do
    sleep 1
    agent=$(agent_count) || fail "the agent's /metrics did not answer"
    kernel=$(kernel_count) || fail "conntrack -S failed in the node namespace"
    if [ "$agent $kernel" = "$previous" ]; then
      settled_agent=$agent settled_kernel=$kernel
      return
    fi
    previous="$agent $kernel"
  done
  fail "the counts did not settle within 20 s with the pods paused (agent, kernel: $previous)"
}

# The pods start paused: the agent attaches first, so every race is one it could see.
mkfifo "$workdir/lab"
node --import tsx test/lab/cli.ts snat-race --loop --paused --interval-ms 500 --json >"$workdir/lab" &
lab_pid=$!
exec 3<"$workdir/lab"
read -r ready <&3 || fail "the lab did not start"
node_pid=$(node -e 'console.log(JSON.parse(process.argv[1]).nodeNetnsPid)' "$ready")
: >"$workdir/lab-events"
cat <&3 >>"$workdir/lab-events" &
wait_for_lab_event paused 1
echo "demo: lab up (node namespace of pid $node_pid); pods paused until the agent is ready"

node dist/main.js --listen "127.0.0.1:$port" --netns-pid "$node_pid" --poll-interval 1 \
  >"$workdir/agent.log" 2>&1 &
agent_pid=$!
deadline=$((SECONDS + 60))
until curl -sf "127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$agent_pid" 2>/dev/null || { cat "$workdir/agent.log"; fail "the agent exited before it was ready"; }
  [ "$SECONDS" -lt "$deadline" ] || { cat "$workdir/agent.log"; fail "the agent was not ready within 60 s"; }
  sleep 0.5
done
settle_counts
agent_before=$settled_agent kernel_before=$settled_kernel
echo "demo: agent ready: http://127.0.0.1:$port/metrics"

kill -USR2 "$lab_pid"
wait_for_lab_event resumed 1
echo "demo: pods race through SNAT twice a second; a race event as the agent logs it:"

shown=0
started=$SECONDS
end=$((started + seconds))
give_up=$((end + extra_seconds))
while :; do
  sleep 5
  if [ "$shown" -eq 0 ] && grep -q '"kind":"insert_failed"' "$workdir/agent.log"; then
    grep -m1 '"kind":"insert_failed"' "$workdir/agent.log"
    shown=1
  fi
  metrics=$(curl -sf "127.0.0.1:$port/metrics") || { cat "$workdir/agent.log"; fail "the agent stopped answering"; }
  agent=$(awk '/^conntrack_observer_insert_failures_total/ {s += $NF} END {print s + 0}' <<<"$metrics")
  kernel=$(awk '/^conntrack_observer_kernel_conntrack_insert_failed_total/ {print $NF}' <<<"$metrics")
  unexplained=$(awk '/^conntrack_observer_unexplained_insert_failures_total/ {print $NF}' <<<"$metrics")
  # Both from one scrape: the kernel's counter as the agent last polled it, so a race between
  # two polls shows in the agent's count first.
  printf 'demo: agent counted %s insert failures (race="snat"); kernel insert_failed %s (last poll); unexplained %s\n' \
    "$agent" "${kernel:-?}" "${unexplained:-?}"
  [ "$SECONDS" -ge "$end" ] || continue
  # The hit rate of the race differs between machines: race on until one was counted.
  [ "$((agent - agent_before))" -ge 1 ] && break
  [ "$SECONDS" -lt "$give_up" ] || break
  [ "$SECONDS" -ge "$((end + 5))" ] || echo "demo: no race counted yet; racing on for up to $extra_seconds s more"
done

kill -USR1 "$lab_pid"
wait_for_lab_event paused 2
settle_counts
agent_after=$settled_agent kernel_after=$settled_kernel
rounds=$(grep -c '"event":"round"' "$workdir/lab-events" || true)
agent_counted=$((agent_after - agent_before))
kernel_counted=$((kernel_after - kernel_before))
raced=$((SECONDS - started))
if [ "$kernel_counted" -eq 0 ] && [ "$agent_counted" -eq 0 ]; then
  fail "result: no insert failure in $rounds rounds ($raced s) of racing: this machine's kernel rarely loses the race; try DEMO_EXTRA_SECONDS=600"
fi
if [ "$agent_counted" -ne "$kernel_counted" ]; then
  fail "result: MISMATCH: the agent counted $agent_counted insert failures, the kernel $kernel_counted, in $rounds rounds"
fi
echo "demo: result: the agent counted $agent_counted insert failures and the kernel $kernel_counted, in $rounds rounds ($raced s): equal"
