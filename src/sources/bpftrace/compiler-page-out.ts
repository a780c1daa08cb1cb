import type { Logger } from 'pino';

import type { CommandRunner } from '../../detect/capabilities.js';

/**
 * LLVM's and Clang's shared libraries, as bpftrace links them (Debian's libLLVM-14.so.1 and
 * libclang-cpp.so.14 for 0.17, libLLVM.so.19.1 and libclang-19.so.19 for 0.23).
 */
const COMPILER_LIBRARY = /\/lib(?:LLVM|clang)[^/]*\.so[^/]*$/;

/**
 * The `START-END` ranges of the compiler's libraries in a process's /proc/PID/maps: their code
 * and read-only data. Writable mappings (the libraries' data) are left alone: what they hold
 * is the process's own, and paging it out would mean swap.
 */
export function compilerRanges(maps: string): string[] {
  const ranges: string[] = [];
  for (const line of maps.split('\n')) {
    // address perms offset dev inode path: the path is the rest, and may hold spaces.
    const [, range, perms, path] =
      /^([0-9a-f]+-[0-9a-f]+) (\S+) \S+ \S+ \d+\s+(\S.*)$/.exec(line) ?? [];
    if (range === undefined || perms === undefined || path === undefined) continue;
    if (!perms.includes('w') && COMPILER_LIBRARY.test(path)) ranges.push(range);
  }
  return ranges;
}

/**
 * Resident bytes of a process from /proc/PID/status: all of them, the file-backed ones, and
 * those of shared memory, as the pages of a library on tmpfs are counted (paging them out
 * takes them out of the process; the tmpfs keeps them, as it keeps the library's file).
 */
export function residentBytes(
  status: string,
): { rss: number; rssFile: number; rssShmem: number } | undefined {
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    return match === null ? undefined : Number(match[1]) * 1024;
  };
  const rss = kib('VmRSS');
  const rssFile = kib('RssFile');
  const rssShmem = kib('RssShmem');
  return rss === undefined || rssFile === undefined || rssShmem === undefined
    ? undefined
    : { rss, rssFile, rssShmem };
}

export interface CompilerPageOutOptions {
  /** The page-out program (native/page-out.c), found or built on first use; throws if none. */
  readonly program: () => Promise<string>;
  readonly run: CommandRunner;
  readonly readText: (path: string) => Promise<string>;
  readonly procRoot: string;
  readonly logger: Logger;
  readonly timeoutMs?: number;
}

/**
 * Once bpftrace has attached, its compiler is never run again, but the pages of LLVM and Clang
 * that the compile faulted in stay resident: about 70–80 MB, most of bpftrace's memory at rest
 * (docs/benchmarks.md, section 3). This asks the kernel to page them out of the process
 * (process_madvise with MADV_PAGEOUT, through native/page-out.c); they are clean file pages,
 * read back from the library should bpftrace ever touch one again. Failing changes nothing but
 * the memory: it is logged, never thrown.
 */
export function createCompilerPageOut(
  options: CompilerPageOutOptions,
): (pid: number, probe: string) => Promise<void> {
  let missingLogged = false;
  return async (pid, probe) => {
    try {
      let program: string;
      try {
        program = await options.program();
      } catch (error) {
        if (!missingLogged) {
          missingLogged = true;
          options.logger.warn(
            { probe, pid, err: error },
            "no page-out program (native/page-out.c: the image installs it, a checkout builds it with gcc): bpftrace's compiler stays resident",
          );
        }
        return;
      }
      const proc = `${options.procRoot}/${pid}`;
      const ranges = compilerRanges(await options.readText(`${proc}/maps`));
      if (ranges.length === 0) {
        options.logger.debug(
          { probe, pid },
          'bpftrace maps no compiler library: nothing to page out',
        );
        return;
      }
      const before = residentBytes(await options.readText(`${proc}/status`));
      const outcome = await options.run(program, [String(pid), ...ranges], {
        timeoutMs: options.timeoutMs ?? 10_000,
      });
      if (outcome.exitCode !== 0) {
        options.logger.warn(
          {
            probe,
            pid,
            exitCode: outcome.exitCode,
            detail: outcome.startError ?? outcome.stderr.trim(),
          },
          "could not page out bpftrace's compiler: it stays resident",
        );
        return;
      }
      const after = residentBytes(await options.readText(`${proc}/status`));
      options.logger.info(
        {
          probe,
          pid,
          ranges: ranges.length,
          bytesAdvised: Number(outcome.stdout.trim()),
          residentBefore: before?.rss,
          residentAfter: after?.rss,
          fileResidentBefore: before?.rssFile,
          fileResidentAfter: after?.rssFile,
          shmemResidentBefore: before?.rssShmem,
          shmemResidentAfter: after?.rssShmem,
        },
        "bpftrace's compiler paged out",
      );
    } catch (error) {
      // The process may have exited meanwhile: its /proc files are gone.
      options.logger.warn({ probe, pid, err: error }, "could not page out bpftrace's compiler");
    }
  };
}
