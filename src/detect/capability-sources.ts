import { access, readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import type { CapabilityFiles, CommandRunner } from './capabilities.js';

/** Capability file reads on the real file system (or under a root the caller prefixes). */
export function createFileSystemCapabilityFiles(): CapabilityFiles {
  return {
    async read(path) {
      try {
        return await readFile(path);
      } catch {
        return undefined;
      }
    },
    async exists(path) {
      try {
        await access(path);
        return true;
      } catch {
        return false;
      }
    },
  };
}

/** Runs commands with execa; a command that cannot start or is killed is an outcome, not a throw. */
export function createExecaCommandRunner(): CommandRunner {
  return async (file, args, { timeoutMs, maxBufferBytes }) => {
    const started = performance.now();
    const result = await execa(file, [...args], {
      reject: false,
      timeout: timeoutMs,
      // bpftrace detaches its probes on SIGTERM; SIGKILL only if it hangs on the way out.
      forceKillAfterDelay: 2_000,
      stdin: 'ignore',
      stripFinalNewline: false,
      ...(maxBufferBytes === undefined ? {} : { maxBuffer: maxBufferBytes }),
    });
    const durationMs = performance.now() - started;
    const neverStarted = result.exitCode === undefined && !result.timedOut && !result.isTerminated;
    return {
      exitCode: result.exitCode,
      stdout: typeof result.stdout === 'string' ? result.stdout : '',
      stderr: typeof result.stderr === 'string' ? result.stderr : '',
      timedOut: result.timedOut,
      startError: neverStarted ? result.shortMessage : undefined,
      durationMs,
    };
  };
}
