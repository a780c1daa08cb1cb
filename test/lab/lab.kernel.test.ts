import { existsSync, readFileSync } from 'node:fs';
import { jest } from '@jest/globals';
import { execa } from 'execa';
import { createLab, labAddresses, removeStaleLabs, type Lab } from './lab.js';
import { listNetns, pidsIn } from './netns.js';
import { dnatClashUntil, snatRaceUntil } from './scenarios/race-until.js';
import { runDnsBlocked, runNoListener } from './scenarios/dns-queries.js';
import { runResolver, type ResolverRun } from './scenarios/resolver.js';

// Namespaces, compiles and thousands of race rounds take seconds.
jest.setTimeout(60_000);

/** Running, not merely a zombie waiting for its new parent to reap it. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function labNamespaces(lab: Lab): string[] {
  return [lab.node.netns, lab.upstream.netns, ...lab.pods.map((pod) => pod.netns)];
}

describe('lab lifecycle', () => {
  it('removes every namespace, process and /etc/netns entry it created, and destroy is idempotent', async () => {
    const lab = await createLab();
    const namespaces = labNamespaces(lab);
    const processes = (await Promise.all(namespaces.map((name) => pidsIn(name)))).flat();
    try {
      expect(await listNetns()).toEqual(expect.arrayContaining(namespaces));
      // The node sleeper and the two dnsmasq backends.
      expect(processes).toContain(lab.node.pid);
      expect(processes.length).toBeGreaterThanOrEqual(3);
      expect(existsSync(`/etc/netns/${lab.pods[0]!.netns}/resolv.conf`)).toBe(true);
    } finally {
      await lab.destroy();
    }
    await lab.destroy();

    const remaining = await listNetns();
    for (const name of namespaces) expect(remaining).not.toContain(name);
    for (const pid of processes) expect(isRunning(pid)).toBe(false);
    for (const pod of lab.pods) expect(existsSync(`/etc/netns/${pod.netns}`)).toBe(false);
  });

  it('cleans up after a lab whose owner was killed, and leaves live labs alone', async () => {
    const live = await createLab();
    // Node itself with tsx's loader, so that the child's pid is the lab owner's pid.
    const orphan = execa(
      process.execPath,
      ['--import', 'tsx', 'test/lab/cli.ts', 'hold', '--json'],
      {
        reject: false,
        buffer: false,
      },
    );
    let orphanNamespaces: string[] = [];
    try {
      const ready = await new Promise<{ labId: string; nodeNetnsPid: number }>(
        (resolve, reject) => {
          orphan.stdout!.on('data', (chunk: Buffer) => {
            const line = chunk
              .toString()
              .split('\n')
              .find((text) => text.includes('"lab-ready"'));
            if (line) resolve(JSON.parse(line) as { labId: string; nodeNetnsPid: number });
          });
          void orphan.then(() => reject(new Error('the lab CLI exited before its lab was ready')));
        },
      );
      // SIGKILL: no handler runs, the namespaces, dnsmasq and the sleeper stay behind.
      orphan.kill('SIGKILL');
      await orphan;
      orphanNamespaces = (await listNetns()).filter((name) => name.startsWith(`${ready.labId}-`));
      expect(orphanNamespaces.length).toBe(4);
      expect(isRunning(ready.nodeNetnsPid)).toBe(true);

      const removed = await removeStaleLabs();

      expect(removed).toEqual(expect.arrayContaining(orphanNamespaces));
      expect(isRunning(ready.nodeNetnsPid)).toBe(false);
      const remaining = await listNetns();
      for (const name of orphanNamespaces) expect(remaining).not.toContain(name);
      expect(remaining).toEqual(expect.arrayContaining(labNamespaces(live)));
    } finally {
      orphan.kill('SIGKILL');
      await live.destroy();
      await removeStaleLabs();
    }
  });
});

describe('lab scenarios, measured by the kernel', () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await createLab();
  });

  afterAll(async () => {
    await lab?.destroy();
  });

  it('snat-race makes the node drop real packets as insert_failed', async () => {
    const result = await snatRaceUntil(lab, { needed: 20 });

    expect(result.datagramsSent).toBe(2 * result.rounds);
    expect(result.kernel['insert_failed']).toBeGreaterThanOrEqual(20);
    // Every loser is dropped, nothing else is.
    expect(result.kernel['drop']).toBe(result.kernel['insert_failed']);
  });

  it('dnat-clash makes the kernel resolve clashes, and fail to far fewer than it resolves', async () => {
    const result = await dnatClashUntil(lab, { needed: 20 });

    expect(result.datagramsSent).toBe(2 * result.rounds);
    expect(result.kernel['clash_resolve']).toBeGreaterThanOrEqual(20);
    // A clash the kernel cannot resolve (its reply tuple already taken by an older entry) is
    // real but rare: once in some 10,000 resolved ones (docs/lab.md).
    expect(result.kernel['insert_failed']! * 10).toBeLessThan(result.kernel['clash_resolve']!);
  });

  it('dns-blocked queries are all dropped by the node firewall, none by conntrack', async () => {
    const result = await runDnsBlocked(lab, { queries: 12 });

    expect(result.queriesSent).toBe(12);
    expect(result.answered).toBe(0);
    expect(result.firewallDrops).toBe(12);
    expect(result.kernel['insert_failed']).toBe(0);
  });

  it('no-listener queries all reach the upstream and find no socket', async () => {
    const result = await runNoListener(lab, { queries: 9 });

    expect(result.queriesSent).toBe(9);
    expect(result.answered).toBe(0);
    expect(result.upstreamUdpNoPorts).toBe(9);
  });

  describe('resolver', () => {
    let runs: Record<string, ResolverRun>;

    beforeAll(async () => {
      const result = await runResolver(lab);
      runs = Object.fromEntries(result.runs.map((run) => [run.library, run]));
    });

    it.each(['glibc', 'musl'])(
      '%s resolves a cluster name and an external name through the ClusterIP',
      (library) => {
        const run = runs[library]!;
        expect(run.results).toEqual([
          { name: 'kubernetes', addresses: ['10.96.0.1'], ms: expect.any(Number) },
          { name: 'www.example.test', addresses: ['192.0.2.80'], ms: expect.any(Number) },
        ]);
        for (const query of run.queries) {
          expect(labAddresses.dnsBackends).toContain(query.backend);
          expect(query.from).toBe(labAddresses.nodeUpstream);
        }
      },
    );

    it.each(['glibc', 'musl'])(
      '%s walks the whole search list for an external name under ndots:5',
      (library) => {
        const run = runs[library]!;
        const asked = new Set(run.queries.map((query) => `${query.type} ${query.name}`));
        for (const name of [
          'www.example.test.default.svc.cluster.local',
          'www.example.test.svc.cluster.local',
          'www.example.test.cluster.local',
          'www.example.test',
        ]) {
          expect(asked).toContain(`A ${name}`);
          expect(asked).toContain(`AAAA ${name}`);
        }
        expect(run.queriesPerName['www.example.test']).toBeGreaterThanOrEqual(8);
        // The short name is found at the first search domain: one A and one AAAA.
        expect(asked).toContain('A kubernetes.default.svc.cluster.local');
        expect(run.queriesPerName['kubernetes']).toBeGreaterThanOrEqual(2);
      },
    );
  });
});
