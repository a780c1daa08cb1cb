import { posix } from 'node:path';
import type { LibcInfo } from '../events/diagnosis.js';
import { resolveInRoot, type HostFiles } from './host-files.js';

const LIBRARY_DIRS = ['lib', 'usr/lib', 'lib64', 'usr/lib64'];
const MUSL_LOADER = /^ld-musl-[a-z0-9_]+\.so\.1$/;
const GLIBC_VERSIONED_FILE = /^libc-(\d+\.\d+)\.so$/;
/** The banner `libc.so.6` prints when run, present in every glibc build. */
const GLIBC_BANNER = /release version (\d+\.\d+)/;
const GLIBC_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Which C library a container's processes resolve names with, read through its root directory
 * (`/proc/<pid>/root`). The process's own executable decides first: its ELF interpreter names
 * the dynamic loader (`ld-musl-*` or `ld-linux-*`), and an executable without one is static
 * (a Go binary, say, which brings its own resolver). The library files then give the version.
 */
export async function detectLibc(
  files: HostFiles,
  root: string,
  executable: string | undefined,
): Promise<LibcInfo> {
  const interpreter = executable ? await elfInterpreter(files, executable) : undefined;
  if (interpreter === 'none')
    return { kind: 'static', evidence: 'executable has no ELF interpreter' };
  const interpreterName = interpreter ? posix.basename(interpreter) : undefined;
  if (interpreterName && MUSL_LOADER.test(interpreterName)) {
    return { kind: 'musl', evidence: interpreter, ...(await muslVersion(files, root)) };
  }
  const glibc = await findGlibc(files, root);
  if (interpreterName?.startsWith('ld-linux')) {
    return glibc ?? { kind: 'glibc', evidence: interpreter };
  }
  // The executable could not be read (or is a script): whatever library the image holds.
  const musl = await findMuslLoader(files, root);
  if (musl) return { kind: 'musl', evidence: musl, ...(await muslVersion(files, root)) };
  return glibc ?? { kind: 'unknown' };
}

async function findMuslLoader(files: HostFiles, root: string): Promise<string | undefined> {
  for (const dir of LIBRARY_DIRS) {
    const resolved = await resolveInRoot(files, root, dir);
    const entries = resolved ? await files.list(resolved) : undefined;
    const loader = entries?.find((entry) => MUSL_LOADER.test(entry));
    if (loader) return `/${dir}/${loader}`;
  }
  return undefined;
}

/** Alpine records the musl package's version in its package database. */
async function muslVersion(files: HostFiles, root: string): Promise<{ version?: string }> {
  const database = await resolveInRoot(files, root, 'lib/apk/db/installed');
  const text = database ? await files.readText(database, GLIBC_MAX_BYTES) : undefined;
  const match = text ? /^P:musl\nV:(\d+\.\d+\.\d+)/m.exec(text) : null;
  return match?.[1] ? { version: match[1] } : {};
}

async function findGlibc(files: HostFiles, root: string): Promise<LibcInfo | undefined> {
  for (const base of LIBRARY_DIRS) {
    const resolvedBase = await resolveInRoot(files, root, base);
    const entries = resolvedBase ? await files.list(resolvedBase) : undefined;
    if (!entries) continue;
    // Debian and Ubuntu keep the library in a multiarch directory (lib/x86_64-linux-gnu).
    const dirs = [
      base,
      ...entries.filter((e) => /-linux-gnu[a-z0-9_]*$/.test(e)).map((e) => `${base}/${e}`),
    ];
    for (const dir of dirs) {
      const libc = await resolveInRoot(files, root, `${dir}/libc.so.6`);
      if (!libc) continue;
      const evidence = `/${dir}/libc.so.6`;
      // Before glibc 2.34 the library's file name carries its version: libc-2.31.so.
      const named = posix.basename(libc).match(GLIBC_VERSIONED_FILE)?.[1];
      if (named) return { kind: 'glibc', version: named, evidence };
      const bytes = await files.read(libc, GLIBC_MAX_BYTES);
      const banner = bytes ? GLIBC_BANNER.exec(bytes.toString('latin1'))?.[1] : undefined;
      return { kind: 'glibc', evidence, ...(banner ? { version: banner } : {}) };
    }
  }
  return undefined;
}

const PT_INTERP = 3;

/**
 * The ELF interpreter of an executable: its path, 'none' for a static executable, undefined
 * when the file cannot be read or is not ELF. Reads only the headers.
 */
export async function elfInterpreter(
  files: HostFiles,
  executable: string,
): Promise<string | 'none' | undefined> {
  const bytes = await files.read(executable, 64 * 1024);
  if (!bytes || bytes.length < 52 || bytes.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const is64 = bytes[4] === 2;
  const little = bytes[5] === 1;
  const u16 = (at: number): number => (little ? bytes.readUInt16LE(at) : bytes.readUInt16BE(at));
  const u32 = (at: number): number => (little ? bytes.readUInt32LE(at) : bytes.readUInt32BE(at));
  const word = (at: number): number =>
    is64 ? Number(little ? bytes.readBigUInt64LE(at) : bytes.readBigUInt64BE(at)) : u32(at);
  const phoff = word(is64 ? 32 : 28);
  const phentsize = u16(is64 ? 54 : 42);
  const phnum = u16(is64 ? 56 : 44);
  for (let index = 0; index < phnum; index += 1) {
    const header = phoff + index * phentsize;
    if (header + phentsize > bytes.length) return undefined;
    if (u32(header) !== PT_INTERP) continue;
    const offset = word(header + (is64 ? 8 : 4));
    const size = word(header + (is64 ? 32 : 16));
    if (offset + size > bytes.length) return undefined;
    return bytes
      .subarray(offset, offset + size)
      .toString('latin1')
      .replace(/\0+$/, '');
  }
  return 'none';
}
