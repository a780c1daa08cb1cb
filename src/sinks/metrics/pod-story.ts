import type { EventDiagnosis, PodDiagnosisResult } from '../../events/diagnosis.js';
import type { RaceKind } from '../../events/types.js';
import { adviceFor, type AdviceInput } from '../../diagnose/remedies.js';
import type { Remedy } from '../../events/advice.js';
import type { PodEventCounts } from './event-metrics.js';

export const POD_STORY_VERSION = 1;

/** What `GET /pods/<namespace>/<name>` answers: the pod's drops and what to do about them. */
export interface PodStory {
  readonly version: typeof POD_STORY_VERSION;
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** Since the agent started (or since the pod's series were created). */
  readonly counts: PodEventCounts;
  /** `unknown` when the pod has not been read (the agent reads a pod at its first event). */
  readonly diagnosis: PodDiagnosisResult;
  readonly summary: string;
  readonly remedies: readonly Remedy[];
  readonly notes: readonly string[];
}

export type PodStoryLookup = (namespace: string, name: string) => PodStory | undefined;

export interface PodStoryDependencies {
  readonly nodeName: string;
  readonly counts: (namespace: string, name: string) => PodEventCounts;
  /** The uid of a pod of this node known to the agent (Kubernetes mode); absent standalone. */
  readonly uidOf?: (namespace: string, name: string) => string | undefined;
  /** The pod's last diagnosis and the node's, without reading anything. */
  readonly diagnosisOf: (uid: string) => EventDiagnosis | undefined;
}

/** The advice for a DNS query lost in a race, when the pod has had no drop yet. */
const DNS_RACE: AdviceInput = { race: 'snat_dnat', protocol: 'udp', dns: true, dnsRaceLike: true };

/** Reads a pod's story from the counters and the diagnosis cache; undefined: an unknown pod. */
export function podStoryLookup(deps: PodStoryDependencies): PodStoryLookup {
  return (namespace, name) => {
    const counts = deps.counts(namespace, name);
    const uid = deps.uidOf?.(namespace, name);
    const counted = [counts.insertFailures, counts.dnsDrops, counts.clashesResolved].some(
      (group) => Object.keys(group).length > 0,
    );
    if (uid === undefined && !counted) return undefined;
    const diagnosis: EventDiagnosis = (uid !== undefined ? deps.diagnosisOf(uid) : undefined) ?? {
      pod: { status: 'unknown', reason: 'not read yet: the agent reads a pod at its first drop' },
      node: { status: 'unknown', reason: 'not read' },
    };
    // The advice of each kind of drop the pod had, in one list.
    const inputs: AdviceInput[] = [
      ...Object.keys(counts.insertFailures).map((race) => ({
        race: race as RaceKind,
        protocol: 'udp',
        dns: true,
        dnsRaceLike: true,
      })),
      ...(Object.keys(counts.dnsDrops).length > 0
        ? [{ protocol: 'udp', dns: true, dnsRaceLike: true }]
        : []),
    ];
    const advice = (inputs.length > 0 ? inputs : [DNS_RACE]).map((input) =>
      adviceFor(input, diagnosis),
    );
    const remedies = new Map<string, Remedy>();
    for (const remedy of advice.flatMap((a) => a.remedies))
      if (!remedies.has(remedy.id)) remedies.set(remedy.id, remedy);
    return {
      version: POD_STORY_VERSION,
      namespace,
      name,
      node: deps.nodeName,
      counts,
      diagnosis: diagnosis.pod,
      summary: advice[0]?.summary ?? '',
      remedies: [...remedies.values()],
      notes: [...new Set(advice.flatMap((a) => a.notes))],
    };
  };
}
