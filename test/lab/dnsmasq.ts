import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResultPromise } from 'execa';
import { spawnIn } from './netns.js';

/**
 * Names the lab's DNS backends answer. Host records (not --address) so that an AAAA query for
 * a name that only has an A record gets NODATA, as from a real server: musl gives up on a
 * lookup whose AAAA half comes back NXDOMAIN while the A half answered.
 */
export const labZone = {
  'kubernetes.default.svc.cluster.local': '10.96.0.1',
  'kube-dns.kube-system.svc.cluster.local': '10.96.0.10',
  'www.example.test': '192.0.2.80',
} as const;

/**
 * Seed 004's search domain: its server holds a TXT record for one name built from the search
 * list, so it answers that name's A and AAAA questions NOERROR with no record (NODATA) where a
 * well-behaved one answers NXDOMAIN. A local zone: without one dnsmasq (no upstream) answers
 * REFUSED, and with it every other name in the zone is NXDOMAIN.
 */
export const nodataSearchDomain = {
  domain: 'corp.test',
  name: 'www.example.test.corp.test',
} as const;

/** Zones answered locally: every other name in them is NXDOMAIN, so search lists are walked. */
export const labLocalZones = ['cluster.local', 'example.test'] as const;

export interface DnsBackend {
  readonly address: string;
  readonly logFile: string;
  readonly pidFile: string;
  readonly process: ResultPromise;
}

export function startDnsmasq(netns: string, address: string, workDir: string): DnsBackend {
  const logFile = join(workDir, `dnsmasq-${address}.log`);
  const pidFile = join(workDir, `dnsmasq-${address}.pid`);
  const args = [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--bind-interfaces',
    `--listen-address=${address}`,
    '--port=53',
    ...labLocalZones.map((zone) => `--local=/${zone}/`),
    // Single-label names get NXDOMAIN rather than REFUSED (there is no upstream to ask).
    '--domain-needed',
    ...Object.entries(labZone).map(([name, ip]) => `--host-record=${name},${ip}`),
    `--local=/${nodataSearchDomain.domain}/`,
    `--txt-record=${nodataSearchDomain.name},seed-004`,
    '--log-queries',
    `--log-facility=${logFile}`,
    `--pid-file=${pidFile}`,
    // Stay root: the log and pid files live in a root-owned work directory.
    '--user=root',
  ];
  return { address, logFile, pidFile, process: spawnIn(netns, 'dnsmasq', args) };
}

export interface LoggedQuery {
  readonly type: string;
  readonly name: string;
  readonly from: string;
  readonly backend: string;
}

/** The queries a backend logged, in order; `skip` drops the ones an earlier read saw. */
export function readQueryLog(backend: DnsBackend, skip = 0): LoggedQuery[] {
  let text: string;
  try {
    text = readFileSync(backend.logFile, 'utf8');
  } catch {
    return [];
  }
  const queries: LoggedQuery[] = [];
  for (const line of text.split('\n')) {
    const match = /query\[(\w+)\] (\S+) from (\S+)/.exec(line);
    if (match?.[1] && match[2] && match[3]) {
      queries.push({ type: match[1], name: match[2], from: match[3], backend: backend.address });
    }
  }
  return queries.slice(skip);
}
