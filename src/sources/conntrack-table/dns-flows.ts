import type { CommandRunner } from '../../detect/capabilities.js';
import { parseConntrackList, type ConntrackList } from './conntrack-list.js';

export interface DnsFlowReaderOptions {
  readonly run: CommandRunner;
  /** `conntrack`, or its path. */
  readonly conntrackPath: string;
  /** Prepended to the command line: nsenter into the node's network namespace when not ours. */
  readonly commandPrefix: readonly string[];
  readonly timeoutMs: number;
  /** The dump's output is cut here (the command then fails): a bound on memory and parse time. */
  readonly maxOutputBytes: number;
}

export type DnsFlowsResult =
  | { readonly ok: true; readonly list: ConntrackList }
  | { readonly ok: false; readonly error: string };

/**
 * One dump of the UDP entries towards port 53 in the node's conntrack table. Never throws: a
 * missing or failing conntrack tool comes back as an error text.
 */
export function dnsFlowReader(options: DnsFlowReaderOptions): () => Promise<DnsFlowsResult> {
  const args = ['-L', '-p', 'udp', '--orig-port-dst', '53'];
  const [file, ...prefixArgs] = [...options.commandPrefix, options.conntrackPath];
  return async () => {
    const outcome = await options.run(file ?? options.conntrackPath, [...prefixArgs, ...args], {
      timeoutMs: options.timeoutMs,
      maxBufferBytes: options.maxOutputBytes,
    });
    // The runner cuts the output at the bound and ends the command: a cut dump is no dump.
    const cut = Buffer.byteLength(outcome.stdout) >= options.maxOutputBytes;
    if (outcome.exitCode === 0 && !cut) {
      return { ok: true, list: parseConntrackList(outcome.stdout) };
    }
    const command = [...options.commandPrefix, options.conntrackPath, ...args].join(' ');
    const why =
      outcome.startError ??
      (cut
        ? `output past ${options.maxOutputBytes} bytes`
        : outcome.timedOut
          ? `timed out after ${options.timeoutMs} ms`
          : outcome.exitCode === undefined
            ? 'ended without an exit code'
            : `exit code ${outcome.exitCode}: ${outcome.stderr.trim().split('\n')[0] ?? ''}`);
    return { ok: false, error: `${command} failed: ${why}` };
  };
}
