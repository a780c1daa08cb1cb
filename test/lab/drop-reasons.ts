import { readFileSync } from 'node:fs';

export const kfreeSkbFormatPath = '/sys/kernel/tracing/events/skb/kfree_skb/format';

/**
 * The running kernel's `enum skb_drop_reason`, name → number, from the tracepoint's
 * `__print_symbolic` table: the numbers differ between kernels, so nothing is hard-coded.
 */
export function readDropReasons(formatPath: string = kfreeSkbFormatPath): Map<string, number> {
  const text = readFileSync(formatPath, 'utf8');
  const reasons = new Map<string, number>();
  for (const match of text.matchAll(/\{\s*(\d+),\s*"([A-Z0-9_]+)"\s*\}/g)) {
    if (match[1] && match[2]) reasons.set(match[2], Number(match[1]));
  }
  return reasons;
}

export function dropReason(reasons: ReadonlyMap<string, number>, name: string): number {
  const code = reasons.get(name);
  if (code === undefined) throw new Error(`this kernel's kfree_skb has no drop reason ${name}`);
  return code;
}
