import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Ajv } from 'ajv';
import type { CapabilityFiles, CommandRunner } from '../../../src/detect/capabilities.js';
import { createHostFiles } from '../../../src/diagnose/host-files.js';
import { buildDoctorReport, type DoctorReport } from '../../../src/diagnose/doctor/report.js';
import { doctorReportSchema } from '../../../src/diagnose/doctor/report-schema.js';
import { capabilityFixtureDir, fixtureSources } from '../../fixtures/capabilities/load.js';
import {
  makeContainerRoot,
  makeProcTree,
  type ContainerRoot,
} from '../../support/container-roots.js';
import { ManualClock } from '../../support/manual-clock.js';

const fixture = (path: string): string =>
  readFileSync(new URL(`../../fixtures/${path}`, import.meta.url), 'utf8');

const fibTrie = (address: string): string =>
  `Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- ${address}\n        /32 host LOCAL\nLocal:\n  +-- 127.0.0.0/8\n     |-- 127.0.0.1\n        /32 host LOCAL\n`;

const ok = (stdout: string) => ({
  exitCode: 0,
  stdout,
  stderr: '',
  timedOut: false,
  startError: undefined,
  durationMs: 1,
});

const validate = new Ajv({ allErrors: true }).compile(doctorReportSchema);

describe('the doctor report schema', () => {
  const cleanup: (() => void)[] = [];
  let report: DoctorReport;

  // A report built the way `doctor` builds it, from fixtures: a recorded 6.1 kernel's
  // capabilities, the lab's iptables rules, a /proc tree with a musl and a glibc pod whose
  // conntrack counters rise between the two readings.
  beforeAll(async () => {
    const roots: ContainerRoot[] = [
      makeContainerRoot(
        'musl',
        'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n',
      ),
      makeContainerRoot('glibc', 'nameserver 10.96.0.10\n'),
    ];
    const proc = makeProcTree([
      { pid: 100, root: roots[0]!.path, netnsInode: 4026532001 },
      { pid: 200, root: roots[1]!.path, netnsInode: 4026532002 },
    ]);
    cleanup.push(...roots.map((root) => root.remove), () =>
      rmSync(proc, { recursive: true, force: true }),
    );
    mkdirSync(join(proc, 'sys/kernel'), { recursive: true });
    mkdirSync(join(proc, 'sys/net/netfilter'), { recursive: true });
    copyFileSync(
      join(capabilityFixtureDir, '6.1-btf/proc/sys/kernel/osrelease'),
      join(proc, 'sys/kernel/osrelease'),
    );
    writeFileSync(join(proc, 'sys/net/netfilter/nf_conntrack_max'), '262144\n');
    writeFileSync(join(proc, 'sys/net/netfilter/nf_conntrack_udp_timeout'), '30\n');
    writeFileSync(join(proc, '100/net/fib_trie'), fibTrie('10.244.0.2'));
    writeFileSync(join(proc, '200/net/fib_trie'), fibTrie('10.244.0.3'));
    mkdirSync(join(proc, '1/net/stat'));
    const stat = join(proc, '1/net/stat/nf_conntrack');
    writeFileSync(stat, fixture('proc/nf_conntrack-6.18-idle.txt'));

    // Capability detection reads the default roots (/proc, /sys, /boot): here under the fixture.
    const recorded = await fixtureSources('6.1-btf');
    const capabilityFiles: CapabilityFiles = {
      read: (path) => recorded.files.read(join(capabilityFixtureDir, '6.1-btf', path)),
      exists: (path) => recorded.files.exists(join(capabilityFixtureDir, '6.1-btf', path)),
    };
    const iptablesNat = fixture('diagnose/iptables-save-nft-lab.txt');
    const run: CommandRunner = async (file, args, options) =>
      file === 'iptables-nft-save'
        ? ok(args.includes('nat') ? iptablesNat : '')
        : recorded.run(file, args, options);
    const clock = new ManualClock();

    report = await buildDoctorReport({
      files: createHostFiles(),
      capabilityFiles,
      procRoot: proc,
      netnsPid: 1,
      run,
      commandPrefix: [],
      clock,
      sleep: async (ms) => {
        clock.advance(ms);
        writeFileSync(stat, fixture('proc/nf_conntrack-6.18-dnat-race.txt'));
      },
      bpftrace: 'bpftrace',
      nodeLocalDnsIps: [],
      clusterDnsIps: ['10.96.0.10'],
      intervalMs: 1000,
    });
  });
  afterAll(() => cleanup.forEach((remove) => remove()));

  it('accepts a report built from fixtures, with pods, findings, remedies and counters', () => {
    expect(report.pods).toHaveLength(2);
    expect(report.findings.map((f) => f.id)).toEqual(
      expect.arrayContaining([
        'snat-without-random-fully',
        'musl-search-fan-out',
        'glibc-without-single-request-reopen',
        'dns-through-nat',
      ]),
    );
    expect(report.counters?.intervalSeconds).toBe(1);
    expect(report.probeMode.mode).toBe('kprobe');
    expect(report.node.kernel?.release).toBe('6.1.0-18-amd64');
    // What doctor --json prints: the report through JSON.
    const printed: unknown = JSON.parse(JSON.stringify(report));
    const valid = validate(printed);
    expect(validate.errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  });

  it.each<[string, (report: Record<string, unknown>) => void]>([
    ['a required part missing', (r) => delete r.node],
    ['a property no type has', (r) => (r.unknownPart = {})],
    ['a value of the wrong type', (r) => (r.pods = [{ subject: 1 }])],
    ['a mode no selection gives', (r) => (r.probeMode = { mode: 'ebpf', reason: '' })],
    ['another version', (r) => (r.version = 2)],
  ])('rejects a report with %s', (_, breakIt) => {
    const broken = JSON.parse(JSON.stringify(report)) as Record<string, unknown>;
    breakIt(broken);
    expect(validate(broken)).toBe(false);
  });

  it('rejects a container without its resolver options, which every reading has', () => {
    const broken = JSON.parse(JSON.stringify(report)) as DoctorReport;
    const conf = broken.pods[0]?.diagnosis.containers[0]?.resolvConf as
      { options: Record<string, unknown> } | undefined;
    expect(conf).toBeDefined();
    delete conf!.options.edns0;
    expect(validate(broken)).toBe(false);
  });
});
