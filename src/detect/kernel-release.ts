/** The numeric part of a kernel release such as `5.15.0-91-generic` or `6.18.44-fc-v669`. */
export interface KernelVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
}

const RELEASE = /^(\d+)\.(\d+)(?:\.(\d+))?/;

/** Reads `/proc/sys/kernel/osrelease` text; undefined when it does not start with a version. */
export function parseKernelRelease(release: string): KernelVersion | undefined {
  const match = RELEASE.exec(release.trim());
  if (match === null) return undefined;
  return {
    major: Number(match[1]),
    minor: Number(match[2]),
    patch: match[3] === undefined ? 0 : Number(match[3]),
  };
}

export function kernelAtLeast(version: KernelVersion, major: number, minor: number): boolean {
  return version.major > major || (version.major === major && version.minor >= minor);
}
