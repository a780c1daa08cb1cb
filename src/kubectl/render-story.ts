import type { V1Pod } from '@kubernetes/client-node';
import type { PodStory } from '../sinks/metrics/pod-story.js';
import { patchTargetOf, remedyPatch } from './remedy-patches.js';

/** `kubectl conntrack-race why`: the story, then each remedy's patch as a YAML document. */
export function renderStory(story: PodStory, pod: V1Pod, agentPod: string): string {
  const lines = [
    `Pod               ${story.namespace}/${story.name} on node ${story.node} (agent ${agentPod})`,
    `Insert failures   ${counts(story.counts.insertFailures)}`,
    `Clashes resolved  ${counts(story.counts.clashesResolved)}`,
    `DNS drops         ${counts(story.counts.dnsDrops)}`,
    `Diagnosis         ${story.diagnosis.status === 'diagnosed' ? story.summary.replace(/^diagnosis: /, '') : `unknown (${story.diagnosis.reason})`}`,
  ];
  if (story.notes.length > 0) lines.push('Notes', ...story.notes.map((note) => `  - ${note}`));
  lines.push('Remedies');
  if (story.remedies.length === 0) lines.push('  none');
  for (const remedy of story.remedies) lines.push(`  - ${remedy.text}`, `    (${remedy.source})`);
  const target = patchTargetOf(pod);
  const patches = story.remedies.flatMap((remedy) =>
    remedy.yaml ? [remedyPatch(target, remedy.yaml, `${remedy.id}.yaml`).trimEnd()] : [],
  );
  for (const patch of patches) lines.push('---', patch);
  return `${lines.join('\n')}\n`;
}

function counts(group: Readonly<Record<string, number>>): string {
  const entries = Object.entries(group).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? 'none' : entries.map(([key, n]) => `${key} ${n}`).join(', ');
}

/** The agent's answer, checked before it is printed from. */
export function parseStory(body: string): PodStory | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  const story = value as Partial<PodStory> | null;
  const isCounts = (group: unknown): boolean =>
    typeof group === 'object' &&
    group !== null &&
    Object.values(group).every((n) => typeof n === 'number');
  if (
    story?.version !== 1 ||
    typeof story.namespace !== 'string' ||
    typeof story.name !== 'string' ||
    typeof story.node !== 'string' ||
    !story.counts ||
    ![story.counts.insertFailures, story.counts.clashesResolved, story.counts.dnsDrops].every(
      isCounts,
    ) ||
    typeof story.diagnosis?.status !== 'string' ||
    !Array.isArray(story.remedies) ||
    !Array.isArray(story.notes)
  )
    return undefined;
  return story as PodStory;
}
