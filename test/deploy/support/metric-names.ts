import { existsSync } from 'node:fs';
import { readRepoFile, repoPath } from './repo-paths.js';

/** The metric names of the agent contract (README/brief), where docs/metrics.md is absent. */
const CONTRACT_METRICS = [
  'conntrack_observer_insert_failures_total',
  'conntrack_observer_dns_drops_total',
  'conntrack_observer_clash_resolved_total',
  'conntrack_observer_unattributed_events_total',
  'conntrack_observer_unexplained_insert_failures_total',
  'conntrack_observer_kernel_conntrack_entries',
  'conntrack_observer_kernel_conntrack_limit',
  'conntrack_observer_probe_up',
  'conntrack_observer_probe_restarts_total',
  'conntrack_observer_probe_events_decoded_total',
  'conntrack_observer_probe_lines_rejected_total',
  'conntrack_observer_probe_events_lost_total',
  'conntrack_observer_probe_mode',
  'conntrack_observer_k8s_events_written_total',
  'conntrack_observer_k8s_events_dropped_total',
  'conntrack_observer_k8s_informer_restarts_total',
  'conntrack_observer_k8s_informer_synced',
  'conntrack_observer_process_cpu_seconds_total',
  'conntrack_observer_process_resident_memory_bytes',
];

/** Kernel conntrack statistics columns named in the contract (`…_<column>_total`). */
const CONTRACT_KERNEL_COLUMNS = ['insert_failed', 'drop', 'early_drop', 'clash_resolve', 'invalid'];

const METRIC_NAME = /\bconntrack_observer_[a-z0-9_]*[a-z0-9]/g;

/** Every `conntrack_observer_*` metric name that occurs in a text (PromQL, Markdown, …). */
export function metricNamesIn(text: string): Set<string> {
  return new Set(text.match(METRIC_NAME) ?? []);
}

export interface MetricCatalogue {
  source: string;
  names: ReadonlySet<string>;
}

/**
 * The metric names the agent exports: those documented in docs/metrics.md when it exists,
 * else the contract's list.
 */
export function knownMetrics(): MetricCatalogue {
  if (existsSync(repoPath('docs', 'metrics.md'))) {
    const text = readRepoFile('docs', 'metrics.md');
    return {
      source: 'docs/metrics.md',
      names: new Set([...metricNamesIn(text), ...histogramSeries(text)]),
    };
  }
  return {
    source: 'the agent contract',
    names: new Set([
      ...CONTRACT_METRICS,
      ...CONTRACT_KERNEL_COLUMNS.map(
        (column) => `conntrack_observer_kernel_conntrack_${column}_total`,
      ),
    ]),
  };
}

const HISTOGRAM_ROW = /^\| `(conntrack_observer_[a-z0-9_]+)` \| histogram \|/gm;

/** The series a histogram documented in a metrics table exposes: `_bucket`, `_sum`, `_count`. */
function histogramSeries(metricsTable: string): string[] {
  return [...metricsTable.matchAll(HISTOGRAM_ROW)].flatMap(([, name]) =>
    ['_bucket', '_sum', '_count'].map((suffix) => `${name}${suffix}`),
  );
}
