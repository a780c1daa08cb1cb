import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startAgent, type RunningAgent } from '../../src/agent.js';
import { parseOptions, type AgentOptions } from '../../src/config/options.js';
import type { KubernetesConnection } from '../../src/attribute/kubernetes/connection.js';
import { systemDependencies } from '../../src/system-dependencies.js';
import { residentBytes } from '../../src/sources/bpftrace/compiler-page-out.js';
import { waitFor } from './eventually.js';

// Re-exported: the kernel tests poll the agent with the one poller of the tests.
export { waitFor };

export interface AgentUnderTest {
  readonly agent: RunningAgent;
  readonly baseUrl: string;
  /** Every JSON log record the agent wrote. */
  readonly logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** Starts the real agent in this process, with real bpftrace, on a free loopback port. */
export async function startAgentUnderTest(
  argv: readonly string[],
  kubernetes?: KubernetesConnection,
): Promise<AgentUnderTest> {
  const parsed = parseOptions(['--listen', '127.0.0.1:0', ...argv], {}, 'test');
  if (parsed.kind !== 'run') throw new Error(`bad agent options: ${JSON.stringify(parsed)}`);
  const options: AgentOptions = parsed.options;
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) {
        if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  const agent = await startAgent(options, {
    ...(await systemDependencies()),
    logger: pino({ level: 'info' }, destination),
    kubernetes,
    version: 'test',
    // Every event on its own line, so tests can read each one.
    eventLogLinesPerWindow: Number.MAX_SAFE_INTEGER,
  });
  const baseUrl = `http://127.0.0.1:${agent.server.address.port}`;
  return { agent, baseUrl, logs, stop: () => agent.stop() };
}

export async function waitUntilReady(baseUrl: string): Promise<void> {
  await waitFor('the agent to be ready', async () =>
    (await fetch(`${baseUrl}/readyz`)).status === 200 ? true : undefined,
  );
}

/**
 * The agent's figure once it equals what the kernel counted, else the last one read after
 * `timeoutMs`: probe counts trail the kernel's by up to a print interval. Compare the result
 * with the kernel's, so that a mismatch shows both numbers.
 */
export async function settledFigure(
  read: () => Promise<number>,
  expected: number,
  timeoutMs = 15_000,
): Promise<number> {
  let last = Number.NaN;
  try {
    return await waitFor(
      `agent count ${expected}`,
      async () => {
        last = await read();
        return last === expected ? last : undefined;
      },
      timeoutMs,
    );
  } catch {
    return last;
  }
}

/** What the agent logged when it paged bpftrace's compiler out (compiler-page-out.ts). */
export interface CompilerPagedOut {
  readonly pid: number;
  readonly bytesAdvised: number;
  readonly fileResidentBefore: number;
  readonly fileResidentAfter: number;
  readonly shmemResidentBefore: number;
  readonly shmemResidentAfter: number;
}

/** Every record the agent logged on paging bpftrace's compiler out, oldest first. */
export function compilerPageOuts(agent: AgentUnderTest): CompilerPagedOut[] {
  return agent.logs.filter(
    (entry) => entry['msg'] === "bpftrace's compiler paged out",
  ) as unknown as CompilerPagedOut[];
}

/** Waits until the agent has paged out the compiler of `starts` bpftrace processes; the latest. */
export async function compilerPagedOut(
  agent: AgentUnderTest,
  starts = 1,
): Promise<CompilerPagedOut> {
  const records = await waitFor(`bpftrace's compiler paged out ${starts} times`, async () => {
    const found = compilerPageOuts(agent);
    return found.length >= starts ? found : undefined;
  });
  return records[records.length - 1]!;
}

/** Most of what bpftrace's compile faulted in (70–80 MB of LLVM and Clang) must leave. */
const COMPILER_BYTES_LEAVING = 30 * 1024 * 1024;

/**
 * Where the process's library pages are counted: file-backed on a root on disk (a node, the
 * image test), shared memory on a root on tmpfs (the CI's clean root). Either way the
 * compiler's must leave the process.
 */
function libraryPages(pagedOut: CompilerPagedOut): {
  field: 'RssFile' | 'RssShmem';
  before: number;
  after: number;
} {
  return pagedOut.fileResidentBefore >= pagedOut.shmemResidentBefore
    ? { field: 'RssFile', before: pagedOut.fileResidentBefore, after: pagedOut.fileResidentAfter }
    : {
        field: 'RssShmem',
        before: pagedOut.shmemResidentBefore,
        after: pagedOut.shmemResidentAfter,
      };
}

/** A process's resident bytes of one kind now, read as the agent reads them. */
function residentNow(pid: number, field: 'RssFile' | 'RssShmem'): number {
  const resident = residentBytes(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (resident === undefined) throw new Error(`no resident figures in /proc/${pid}/status`);
  return field === 'RssFile' ? resident.rssFile : resident.rssShmem;
}

/** Checks that the agent paged the latest bpftrace's compiler out, and that it left memory. */
export async function expectCompilerPagedOut(agent: AgentUnderTest): Promise<void> {
  const pagedOut = await compilerPagedOut(agent);
  expect(pagedOut.bytesAdvised).toBeGreaterThan(0);
  const pages = libraryPages(pagedOut);
  expect(pages.before - pages.after).toBeGreaterThan(COMPILER_BYTES_LEAVING);
}

/**
 * Checks, after the counting tests, that one page-out ran per bpftrace started and that the
 * latest one's compiler did not come back into memory: bpftrace never ran it again.
 */
export async function expectCompilerStillOut(agent: AgentUnderTest, starts = 1): Promise<void> {
  const pagedOut = await compilerPagedOut(agent, starts);
  expect(new Set(compilerPageOuts(agent).map((record) => record.pid)).size).toBe(starts);
  const pages = libraryPages(pagedOut);
  expect(residentNow(pagedOut.pid, pages.field)).toBeLessThan(
    pages.before - COMPILER_BYTES_LEAVING,
  );
}
