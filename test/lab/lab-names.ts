import { randomBytes } from 'node:crypto';

/** Every namespace, file and directory a lab creates starts with this, then 6 hex digits. */
export const LAB_PREFIX = 'cro';

const labIdPattern = new RegExp(`^(${LAB_PREFIX}[0-9a-f]{6})-[a-z0-9]+$`);

/** A fresh lab id, random so that leftovers of a crashed run never block the next one. */
export function newLabId(): string {
  return `${LAB_PREFIX}${randomBytes(3).toString('hex')}`;
}

/** The lab id a namespace (or /etc/netns entry) belongs to, or undefined if it is not a lab's. */
export function labIdOf(name: string): string | undefined {
  return labIdPattern.exec(name)?.[1];
}
