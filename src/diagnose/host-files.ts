import { lstat, open, readdir, readlink, stat } from 'node:fs/promises';
import { posix } from 'node:path';

/**
 * The file reads the diagnosis needs, on the host's file system (through /proc for a
 * container's files). Never throws: a missing or unreadable file is undefined. Injected, so the
 * diagnosis is tested on fixture trees.
 */
export interface HostFiles {
  /** At most `maxBytes` of the file (default 1 MiB). */
  read(path: string, maxBytes?: number): Promise<Buffer | undefined>;
  readText(path: string, maxBytes?: number): Promise<string | undefined>;
  list(path: string): Promise<string[] | undefined>;
  readLink(path: string): Promise<string | undefined>;
  /** The identity of what the path names, following links (a directory's device and inode). */
  identity(path: string): Promise<string | undefined>;
  /** lstat: the entry itself, not what a link points at. */
  kind(path: string): Promise<'file' | 'directory' | 'symlink' | 'other' | undefined>;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;

export function createHostFiles(): HostFiles {
  const read = async (path: string, maxBytes = DEFAULT_MAX_BYTES): Promise<Buffer | undefined> => {
    let handle;
    try {
      handle = await open(path, 'r');
      const buffer = Buffer.alloc(maxBytes);
      let length = 0;
      // procfs files report size 0: read until the end or the bound.
      while (length < maxBytes) {
        const { bytesRead } = await handle.read(buffer, length, maxBytes - length, null);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      return buffer.subarray(0, length);
    } catch {
      return undefined;
    } finally {
      await handle?.close().catch(() => undefined);
    }
  };
  return {
    read,
    readText: async (path, maxBytes) => (await read(path, maxBytes))?.toString('utf8'),
    list: (path) => readdir(path).catch(() => undefined),
    readLink: (path) => readlink(path).catch(() => undefined),
    identity: async (path) => {
      try {
        const stats = await stat(path);
        return `${stats.dev}:${stats.ino}`;
      } catch {
        return undefined;
      }
    },
    kind: async (path) => {
      try {
        const stats = await lstat(path);
        if (stats.isSymbolicLink()) return 'symlink';
        if (stats.isDirectory()) return 'directory';
        return stats.isFile() ? 'file' : 'other';
      } catch {
        return undefined;
      }
    },
  };
}

const MAX_LINKS = 40; // the kernel's own bound on nested symlinks (MAXSYMLINKS)

/**
 * `path` inside the root directory `root` (a container's /proc/<pid>/root), with every symlink
 * resolved inside that root: an absolute link target such as `/usr/lib/libc.so` would otherwise
 * be followed on the host's file system. Undefined on a loop or a missing component.
 */
export async function resolveInRoot(
  files: HostFiles,
  root: string,
  path: string,
): Promise<string | undefined> {
  const pending = path.split('/').filter((part) => part !== '' && part !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = posix.join(root, ...resolved, part);
    const kind = await files.kind(candidate);
    if (kind === undefined) return undefined;
    if (kind !== 'symlink') {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) return undefined;
    const target = await files.readLink(candidate);
    if (target === undefined) return undefined;
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
  }
  return posix.join(root, ...resolved);
}
