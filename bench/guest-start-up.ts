/*
 * Section 7b, host side: boots Debian 12's 6.1 kernel under QEMU with the kernel matrix's
 * machinery (test/kernels/: the same packages, cache, virtme and guest set-up as
 * `npm run test:kernels`) and runs bench/guest-start-up-probe.ts in it, then reads back the
 * result file the guest wrote. Root, `npm run build` first (the guest starts dist/main.js).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AptArchive } from '../test/kernels/apt-archive.js';
import { kernelById } from '../test/kernels/catalogue.js';
import { runGuestOnceMoreIfLost, summaryLine } from '../test/kernels/guest-run.js';
import { ensureHostTools } from '../test/kernels/host-tools.js';
import { unpackKernel } from '../test/kernels/kernel-tree.js';
import { unpackVirtme } from '../test/kernels/virtme.js';
import {
  GUEST_START_UP_FILE,
  GuestStartUpError,
  readGuestStartUp,
  type GuestStartUpFigures,
} from './guest-start-up-result.js';
import type { NewerBpftrace } from './newer-bpftrace.js';

const repo = fileURLToPath(new URL('..', import.meta.url));

export interface GuestStartUpOptions {
  /** Packages and unpacked kernels, shared with `npm run test:kernels`. */
  readonly cacheDir?: string;
  readonly rounds?: number;
  /** The image's bpftrace, which the guest runs beside the machine's (bench/newer-bpftrace.ts). */
  readonly newer: NewerBpftrace;
  readonly log: (line: string) => void;
}

export async function measureGuestStartUp(
  options: GuestStartUpOptions,
): Promise<GuestStartUpFigures> {
  if (!existsSync(join(repo, 'dist', 'main.js')))
    throw new GuestStartUpError('no dist/main.js: run npm run build first');
  const cacheDir = options.cacheDir ?? '/var/cache/conntrack-race-observer/kernels';
  const spec = kernelById('6.1');
  await ensureHostTools(options.log);
  const virtmeArchive = new AptArchive(cacheDir, 'trixie', options.log);
  await virtmeArchive.refresh(false);
  const virtme = await unpackVirtme(virtmeArchive, cacheDir, options.log);
  const kernelArchive = new AptArchive(cacheDir, spec.suite, options.log);
  await kernelArchive.refresh(false);
  const tree = await unpackKernel(spec, kernelArchive, cacheDir, options.log);
  const outDir = join(repo, 'reports', 'bench', 'guest-start-up');
  options.log(`booting ${tree.release} under QEMU (logs in ${outDir})`);
  const run = await runGuestOnceMoreIfLost(
    {
      tree,
      virtme,
      repo,
      command: [
        'node',
        '--import',
        'tsx',
        'bench/guest-start-up-probe.ts',
        String(options.rounds ?? 3),
        // The host's path: the guest shares the machine's root, as the kernel matrix's agents do.
        options.newer.path,
        options.newer.version,
      ],
      outDir,
      // Twelve starts (two bpftraces, two modes, three rounds), each 30–60 s here and up to
      // 111 s seen in the kernel matrix's guests, and a boot; bounded well above that.
      timeoutMs: 2_400_000,
      memory: '2G',
      cpus: 2,
      bootConsole: false,
      // Never aborted: a bench killed outright takes the guest with it (parent-death signal).
      signal: new AbortController().signal,
    },
    options.log,
  );
  options.log(summaryLine(run));
  const result = readGuestStartUp(join(outDir, 'results', GUEST_START_UP_FILE), outDir);
  // A guest that wrote its result and then failed a check still says which: the report shows it.
  if (run.outcome.kind !== 'exited' && result.rounds.length === 0)
    throw new GuestStartUpError(summaryLine(run));
  return { result, bootSeconds: run.bootSeconds, guestSeconds: run.durationSeconds };
}
