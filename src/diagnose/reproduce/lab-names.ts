/**
 * Every namespace of a reproduce lab is named `cro-repro-<owner pid>-<6 hex>-<role>`: the
 * prefix keeps it apart from anything else on the node (and from the test lab's `cro<hex>-`),
 * the pid tells a later run whether the owner is gone, the hex keeps two runs apart.
 */
export const REPRODUCE_PREFIX = 'cro-repro-';

export const LAB_ROLES = ['node', 'pod1', 'pod2', 'up'] as const;
export type LabRole = (typeof LAB_ROLES)[number];

const namePattern = /^cro-repro-(\d+)-([0-9a-f]{6})-(node|pod1|pod2|up)$/;

export interface LabName {
  readonly ownerPid: number;
  readonly labId: string;
  readonly role: LabRole;
}

export function labNamespace(ownerPid: number, labId: string, role: LabRole): string {
  return `${REPRODUCE_PREFIX}${ownerPid}-${labId}-${role}`;
}

/** The parts of a reproduce lab namespace name, or undefined for any other name. */
export function parseLabNamespace(name: string): LabName | undefined {
  const match = namePattern.exec(name);
  if (!match?.[1] || !match[2] || !match[3]) return undefined;
  return { ownerPid: Number(match[1]), labId: match[2], role: match[3] as LabRole };
}
