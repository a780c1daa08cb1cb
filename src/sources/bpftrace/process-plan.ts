import { CombineError, combineScripts } from './combined-program.js';
import { createLineRouter, type LineRoute } from './line-router.js';

/** What planning needs of a probe (a ProbeDefinition of bpftrace-supervisor.ts). */
export interface PlannedProbe {
  readonly name: string;
  readonly args: readonly string[];
  readonly bpftraceOptions?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly attachTimeoutMs?: number;
  readonly combinable?: {
    readonly source: string;
    readonly records: readonly string[];
    readonly maps: readonly string[];
  };
}

/** One bpftrace process running several probes. */
export interface CombinedProcess {
  readonly probes: readonly string[];
  readonly program: string;
  readonly env: Readonly<Record<string, string>>;
  readonly bpftraceOptions: readonly string[];
  readonly attachTimeoutMs: number | undefined;
  /** The probe a line of the process belongs to; undefined for the process's own lines. */
  readonly route: LineRoute;
}

export interface ProcessPlan {
  readonly combined: CombinedProcess | undefined;
  /** Probes that run in a process of their own. */
  readonly alone: readonly string[];
  /** Probes that could have joined the combined process but did not, and why, for the log. */
  readonly notes: readonly { probe: string; reason: string }[];
}

/**
 * Which probes share one bpftrace process: every probe whose script text and output names are
 * known, unless its bpftrace environment contradicts that of the probes before it (the same
 * variable with another value): such a probe runs alone. Environments and options that agree
 * are merged (the union of the variables; `--include` options once each). Fewer than two
 * probes: nothing to combine.
 */
export function planProcesses(probes: readonly PlannedProbe[]): ProcessPlan {
  const members: PlannedProbe[] = [];
  const notes: { probe: string; reason: string }[] = [];
  const env: Record<string, string> = {};
  for (const probe of probes) {
    if (probe.combinable === undefined) continue;
    const conflict = Object.entries(probe.env ?? {}).find(
      ([key, value]) => env[key] !== undefined && env[key] !== value,
    );
    if (conflict !== undefined) {
      notes.push({
        probe: probe.name,
        reason: `needs ${conflict[0]}=${conflict[1]}, the others ${conflict[0]}=${env[conflict[0]] ?? ''}`,
      });
      continue;
    }
    Object.assign(env, probe.env ?? {});
    members.push(probe);
  }
  const everyoneAlone = { combined: undefined, alone: probes.map((probe) => probe.name), notes };
  if (members.length < 2) return everyoneAlone;
  let program: string;
  try {
    program = combineScripts(
      members.map((probe) => ({
        name: probe.name,
        source: probe.combinable?.source ?? '',
        args: probe.args,
        maps: probe.combinable?.maps ?? [],
      })),
    );
  } catch (error) {
    if (!(error instanceof CombineError)) throw error;
    return {
      ...everyoneAlone,
      notes: [
        ...notes,
        {
          probe: members.map((probe) => probe.name).join(', '),
          reason: `${error.code}: ${error.message}`,
        },
      ],
    };
  }
  const names = members.map((probe) => probe.name);
  const timeouts = members.flatMap((probe) =>
    probe.attachTimeoutMs === undefined ? [] : [probe.attachTimeoutMs],
  );
  return {
    combined: {
      probes: names,
      program,
      env,
      bpftraceOptions: mergeOptions(members.map((probe) => probe.bpftraceOptions ?? [])),
      attachTimeoutMs: timeouts.length === 0 ? undefined : Math.max(...timeouts),
      route: createLineRouter(
        members.map((probe) => ({
          probe: probe.name,
          records: probe.combinable?.records ?? [],
          maps: probe.combinable?.maps ?? [],
        })),
      ),
    },
    notes,
    alone: probes.map((probe) => probe.name).filter((name) => !names.includes(name)),
  };
}

/** Options of several variants, each (`--include FILE`, or a lone flag) once. */
function mergeOptions(lists: readonly (readonly string[])[]): string[] {
  const seen = new Set<string>();
  const merged: string[] = [];
  for (const list of lists) {
    for (let i = 0; i < list.length; i += 1) {
      const option = list[i] ?? '';
      const value = list[i + 1];
      const group = value !== undefined && !value.startsWith('-') ? [option, value] : [option];
      i += group.length - 1;
      const key = group.join('\0');
      if (seen.has(key)) continue;
      seen.add(key);
      merged.push(...group);
    }
  }
  return merged;
}
