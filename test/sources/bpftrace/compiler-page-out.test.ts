import type { CommandOutcome, CommandRunner } from '../../../src/detect/capabilities.js';
import {
  compilerRanges,
  createCompilerPageOut,
  residentBytes,
} from '../../../src/sources/bpftrace/compiler-page-out.js';
import { capturingLogger, LEVEL } from './bpftrace-supervisor-support.js';

// Lines of bpftrace's /proc/PID/maps: Debian 12's 0.17 (LLVM 14) and Debian 13's 0.23 (LLVM
// 19, bundled under a directory of its own, one library deleted since it was mapped).
const MAPS = [
  '55d0c0a00000-55d0c0b2e000 r--p 00000000 08:01 1311 /usr/bin/bpftrace',
  '55d0c2f4e000-55d0c3a81000 rw-p 00000000 00:00 0 [heap]',
  '7f1c2c000000-7f1c2c021000 rw-p 00000000 00:00 0 ',
  '7f1c30000000-7f1c3100c000 r--p 00000000 08:01 2233 /usr/lib/llvm-14/lib/libLLVM-14.so.1',
  '7f1c3100c000-7f1c34a2b000 r-xp 0100c000 08:01 2233 /usr/lib/llvm-14/lib/libLLVM-14.so.1',
  '7f1c34a2b000-7f1c34b00000 rw-p 04a2b000 08:01 2233 /usr/lib/llvm-14/lib/libLLVM-14.so.1',
  '7f1c35000000-7f1c35c00000 r-xp 00000000 08:01 2240 /usr/lib/x86_64-linux-gnu/libclang-cpp.so.14',
  '7f1c36000000-7f1c36400000 r-xp 00000000 08:01 3001 /opt/bpftrace/root/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1 (deleted)',
  '7f1c37000000-7f1c37200000 r-xp 00000000 08:01 3002 /opt/my libs/libclang-19.so.19',
  '7f1c38000000-7f1c38200000 r-xp 00000000 08:01 3003 /usr/lib/x86_64-linux-gnu/libc.so.6',
  '7f1c39000000-7f1c39010000 r-xp 00000000 08:01 3004 /opt/LLVM/lib/libz.so.1',
  '7ffd5e1f0000-7ffd5e211000 rw-p 00000000 00:00 0 [stack]',
  '',
].join('\n');

const STATUS_BEFORE =
  'Name:\tbpftrace\nVmRSS:\t  116000 kB\nRssAnon:\t   36000 kB\nRssFile:\t   80000 kB\nRssShmem:\t       0 kB\n';
const STATUS_AFTER =
  'Name:\tbpftrace\nVmRSS:\t   46000 kB\nRssAnon:\t   36000 kB\nRssFile:\t   10000 kB\nRssShmem:\t       0 kB\n';

const outcome = (exitCode: number, stdout = '', stderr = ''): CommandOutcome => ({
  exitCode,
  stdout,
  stderr,
  timedOut: false,
  startError: undefined,
  durationMs: 3,
});

function pageOutHarness(options: {
  program?: () => Promise<string>;
  result?: CommandOutcome;
  files?: Record<string, string[]>;
}) {
  const { logger, records } = capturingLogger();
  const calls: { file: string; args: readonly string[] }[] = [];
  const run: CommandRunner = (file, args) => {
    calls.push({ file, args });
    return Promise.resolve(options.result ?? outcome(0, '167628800\n'));
  };
  // Each read of a file returns its next content: /proc/PID/status before, then after.
  const files = options.files ?? {
    '/proc/42/maps': [MAPS],
    '/proc/42/status': [STATUS_BEFORE, STATUS_AFTER],
  };
  const readText = (path: string): Promise<string> => {
    const next = files[path]?.shift();
    return next === undefined
      ? Promise.reject(new Error(`ENOENT: ${path}`))
      : Promise.resolve(next);
  };
  const pageOut = createCompilerPageOut({
    program: options.program ?? (() => Promise.resolve('/usr/local/lib/page-out')),
    run,
    readText,
    procRoot: '/proc',
    logger,
  });
  return { pageOut, calls, records };
}

describe('compilerRanges', () => {
  it("takes the code and read-only data of LLVM's and Clang's libraries, of either bpftrace, and nothing else", () => {
    expect(compilerRanges(MAPS)).toEqual([
      '7f1c30000000-7f1c3100c000',
      '7f1c3100c000-7f1c34a2b000',
      '7f1c35000000-7f1c35c00000',
      '7f1c36000000-7f1c36400000',
      '7f1c37000000-7f1c37200000',
    ]);
  });

  it('finds none in a process that links no compiler', () => {
    expect(compilerRanges(MAPS.split('\n').slice(0, 3).join('\n'))).toEqual([]);
  });
});

describe('residentBytes', () => {
  it('reads VmRSS, RssFile and RssShmem in bytes', () => {
    expect(residentBytes(STATUS_BEFORE)).toEqual({
      rss: 116000 * 1024,
      rssFile: 80000 * 1024,
      rssShmem: 0,
    });
  });

  it('is undefined when a field is missing', () => {
    expect(residentBytes('Name:\tbpftrace\nVmRSS:\t 1 kB\n')).toBeUndefined();
  });
});

describe('createCompilerPageOut', () => {
  it("pages the compiler's ranges out of the process and logs what it freed", async () => {
    const { pageOut, calls, records } = pageOutHarness({});
    await pageOut(42, 'combined');
    expect(calls).toEqual([
      { file: '/usr/local/lib/page-out', args: ['42', ...compilerRanges(MAPS)] },
    ]);
    const logged = records.filter((record) => record.msg === "bpftrace's compiler paged out");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({
      level: LEVEL.info,
      probe: 'combined',
      pid: 42,
      ranges: 5,
      bytesAdvised: 167628800,
      residentBefore: 116000 * 1024,
      residentAfter: 46000 * 1024,
      fileResidentBefore: 80000 * 1024,
      fileResidentAfter: 10000 * 1024,
      shmemResidentBefore: 0,
      shmemResidentAfter: 0,
    });
  });

  it('says once that there is no page-out program, and runs nothing', async () => {
    const { pageOut, calls, records } = pageOutHarness({
      program: () => Promise.reject(new Error('no gcc')),
    });
    await pageOut(42, 'combined');
    await pageOut(43, 'combined');
    expect(calls).toEqual([]);
    const warnings = records.filter((record) => record.level === LEVEL.warn);
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]?.msg)).toContain('stays resident');
    expect(JSON.stringify(warnings[0]?.err)).toContain('no gcc');
  });

  it("warns with the program's reason when it fails", async () => {
    const { pageOut, records } = pageOutHarness({
      result: outcome(1, '', 'page-out: process_madvise(42): Operation not permitted\n'),
    });
    await pageOut(42, 'combined');
    expect(records.filter((record) => record.level === LEVEL.warn)).toEqual([
      expect.objectContaining({
        msg: "could not page out bpftrace's compiler: it stays resident",
        exitCode: 1,
        detail: 'page-out: process_madvise(42): Operation not permitted',
      }),
    ]);
  });

  it('runs nothing for a bpftrace that maps no compiler library', async () => {
    const { pageOut, calls, records } = pageOutHarness({
      files: { '/proc/42/maps': ['7f1c2c000000-7f1c2c021000 rw-p 00000000 00:00 0 \n'] },
    });
    await pageOut(42, 'combined');
    expect(calls).toEqual([]);
    expect(records.filter((record) => record.level >= LEVEL.warn)).toEqual([]);
  });

  it('warns, and does not throw, when the process is gone', async () => {
    const { pageOut, calls, records } = pageOutHarness({ files: {} });
    await expect(pageOut(42, 'combined')).resolves.toBeUndefined();
    expect(calls).toEqual([]);
    expect(records.filter((record) => record.level === LEVEL.warn)).toHaveLength(1);
  });
});
