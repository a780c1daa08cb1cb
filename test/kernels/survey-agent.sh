#!/usr/bin/env bash
# What the agent does on the kernel it runs on, against the lab: run inside a kernel-matrix
# guest (npm run test:kernels -- KERNEL -- bash test/kernels/survey-agent.sh). For each probe
# mode in SURVEY_MODES it starts the lab's SNAT race loop, starts the agent watching the lab's
# node namespace, waits for /readyz, lets it count for SURVEY_SECONDS, and keeps the agent's
# log, /readyz, /metrics and the kernel's counters (conntrack -S in the node namespace). Also
# records bpftrace --info, the kfree_skb tracepoint format and the one-socket DNAT race.
# Needs `npm run build` and the lab's generators built beforehand (on the host: faster).
set -euo pipefail
out=${KERNEL_MATRIX_RESULTS:?run inside a kernel-matrix guest}
modes=${SURVEY_MODES:-auto}
seconds=${SURVEY_SECONDS:-60}
ready_timeout=${SURVEY_READY_TIMEOUT:-300}
dnat_rounds=${SURVEY_DNAT_ROUNDS:-5000}
port=9474
say() { echo "survey: $*" >&2; }

{ time bpftrace --info; } >"$out/bpftrace-info.txt" 2>&1 || true
cp /sys/kernel/tracing/events/skb/kfree_skb/format "$out/kfree_skb-format.txt" || true
head -1 /proc/net/stat/nf_conntrack >"$out/conntrack-stat-columns.txt"

lab_pid='' agent_pid=''
stop() {
  [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
  [ -n "$lab_pid" ] && kill -TERM "$lab_pid" 2>/dev/null && wait "$lab_pid" 2>/dev/null
  agent_pid='' lab_pid=''
}
trap stop EXIT

# survey_mode NAME MODE [VAR=VALUE...]: one agent run beside the SNAT race loop.
survey_mode() {
  local name=$1 mode=$2
  shift 2
  local dir="$out/$name"
  mkdir -p "$dir"
  say "$name: starting the lab"
  local start=$SECONDS
  node --import tsx test/lab/cli.ts snat-race --loop --interval-ms 500 --json \
    >"$dir/lab.jsonl" 2>"$dir/lab.err" &
  lab_pid=$!
  until [ -s "$dir/lab.jsonl" ]; do
    kill -0 "$lab_pid" 2>/dev/null || { say "$name: lab failed"; cat "$dir/lab.err" >&2; return 1; }
    sleep 1
  done
  local node_pid
  node_pid=$(head -1 "$dir/lab.jsonl" | node -e 'process.stdin.on("data",d=>console.log(JSON.parse(d).nodeNetnsPid))')
  say "$name: lab up after $((SECONDS - start)) s; agent --probe-mode $mode $*"
  nsenter -t "$node_pid" -n conntrack -S >"$dir/conntrack-before.txt"
  start=$SECONDS
  env "$@" node dist/main.js --probe-mode "$mode" --listen "127.0.0.1:$port" \
    --netns-pid "$node_pid" --poll-interval 1 >"$dir/agent.log" 2>&1 &
  agent_pid=$!
  local code=000 ready_after=''
  while [ $((SECONDS - start)) -lt "$ready_timeout" ]; do
    kill -0 "$agent_pid" 2>/dev/null || break
    code=$(curl -s -o "$dir/readyz.txt" -w '%{http_code}' "127.0.0.1:$port/readyz" || true)
    if [ "$code" = 200 ]; then ready_after=$((SECONDS - start)); break; fi
    sleep 1
  done
  say "$name: /readyz $code after $((SECONDS - start)) s"
  local rounds_at_ready
  rounds_at_ready=$(grep -c '"event":"round"' "$dir/lab.jsonl" || true)
  # Figures from readiness on: both sides counted over the same window.
  nsenter -t "$node_pid" -n conntrack -S >"$dir/conntrack-ready.txt"
  curl -s "127.0.0.1:$port/metrics" >"$dir/metrics-ready.txt" || true
  [ -n "$ready_after" ] && sleep "$seconds"
  curl -s -o "$dir/readyz.txt" -w '%{http_code}\n' "127.0.0.1:$port/readyz" >"$dir/readyz-code.txt" || true
  curl -s "127.0.0.1:$port/metrics" >"$dir/metrics.txt" || true
  nsenter -t "$node_pid" -n conntrack -S >"$dir/conntrack-after.txt"
  stop
  local rounds
  rounds=$(grep -c '"event":"round"' "$dir/lab.jsonl" || true)
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const fs = require("fs");
    const [dir, mode, code, readyAfter, roundsAtReady, rounds] = process.argv.slice(1);
    const sum = (file) => fs.readFileSync(`${dir}/${file}`, "utf8").split("\n")
      .reduce((acc, line) => { for (const [, k, v] of line.matchAll(/(\w+)=(\d+)/g)) acc[k] = (acc[k] ?? 0) + Number(v); return acc; }, {});
    const delta = (from, to) => { const a = sum(from), b = sum(to); return Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)])); };
    const kernel = delta("conntrack-before.txt", "conntrack-after.txt");
    const kernelSinceReady = delta("conntrack-ready.txt", "conntrack-after.txt");
    const read = (file) => fs.readFileSync(`${dir}/${file}`, "utf8");
    const total = (text, name) => text.split("\n").filter((l) => l.startsWith(name)).reduce((s, l) => s + Number(l.split(" ").pop()), 0);
    const metric = (name) => total(read("metrics.txt"), name);
    const sinceReady = (name) => metric(name) - total(read("metrics-ready.txt"), name);
    const log = fs.readFileSync(`${dir}/agent.log`, "utf8").split("\n").filter(Boolean);
    const modeLine = log.find((l) => /probe mode|"mode"/i.test(l));
    console.log(JSON.stringify({ mode, readyzCode: Number(code), readyAfterSeconds: readyAfter === "" ? null : Number(readyAfter),
      roundsAtReady: Number(roundsAtReady), rounds: Number(rounds), kernelDelta: kernel,
      sinceReady: { rounds: Number(rounds) - Number(roundsAtReady), kernelInsertFailed: kernelSinceReady.insert_failed,
        kernelClashResolve: kernelSinceReady.clash_resolve, agentInsertFailures: sinceReady("conntrack_observer_insert_failures_total"),
        agentUnexplained: sinceReady("conntrack_observer_unexplained_insert_failures_total") },
      agentUnexplained: metric("conntrack_observer_unexplained_insert_failures_total"),
      probesUp: read("metrics.txt").split("\n").filter((l) => l.startsWith("conntrack_observer_probe_up")),
      agentInsertFailures: metric("conntrack_observer_insert_failures_total"),
      agentClashResolved: metric("conntrack_observer_clash_resolved_total"),
      modeLine: modeLine ?? null }, null, 2));
  ' "$dir" "$mode" "$code" "$ready_after" "$rounds_at_ready" "$rounds" >"$dir/summary.json"
  cat "$dir/summary.json" >&2
}

for mode in $modes; do survey_mode "$mode" "$mode" || say "$mode: failed"; done
if [ -n "${SURVEY_EXTRA_ENV:-}" ]; then
  # shellcheck disable=SC2086 # a list of VAR=VALUE words
  survey_mode "auto-extra-env" auto $SURVEY_EXTRA_ENV || say "auto with $SURVEY_EXTRA_ENV: failed"
fi

say "dnat-clash: $dnat_rounds rounds"
{ time node --import tsx test/lab/cli.ts dnat-clash --rounds "$dnat_rounds" --json; } \
  >"$out/dnat-clash.jsonl" 2>"$out/dnat-clash.err" || say "dnat-clash failed"
tail -1 "$out/dnat-clash.jsonl" >&2
