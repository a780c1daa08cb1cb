import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelById } from './catalogue.js';
import {
  loadMatrix,
  renderTable,
  replaceTable,
  summaryLines,
  tableBegin,
  tableEnd,
} from './matrix-report.js';
import { parseProofResult, type ProofResult } from './proof-result.js';

// Real results of a 6.12 guest (agent polling every second), where the agent's counts matched
// the kernel's but its unexplained count did not stay 0.
const fixtures = new URL('../fixtures/kernel-matrix/', import.meta.url);
const fixture = (name: string): string => new URL(name, fixtures).pathname;

/** The cells of a rendered table's header row. */
const header = (table: string): string[] =>
  table
    .split('\n')
    .find((line) => line.startsWith('| kernel |'))!
    .split(' | ');

/** The cells of each 6.12 row of a rendered table. */
const rows = (table: string): string[][] =>
  table
    .split('\n')
    .filter((line) => line.startsWith('| 6.12'))
    .map((line) => line.split(' | '));

/** The index of column `first`, checked present and followed by column `second`. */
const adjacentColumns = (table: string, first: string, second: string): number => {
  const at = header(table).indexOf(first);
  expect(at).toBeGreaterThan(0);
  expect(header(table).indexOf(second)).toBe(at + 1);
  return at;
};

describe('the kernel matrix report', () => {
  let out: string;

  beforeEach(() => {
    out = mkdtempSync(join(tmpdir(), 'matrix-report-'));
    mkdirSync(join(out, '6.12', 'results'), { recursive: true });
    copyFileSync(
      fixture('6.12-prove-auto-unexplained.json'),
      join(out, '6.12', 'results', 'prove-auto.json'),
    );
    copyFileSync(
      fixture('6.12-prove-tracepoint-unexplained.json'),
      join(out, '6.12', 'results', 'prove-tracepoint.json'),
    );
    writeFileSync(
      join(out, 'summary.json'),
      JSON.stringify([
        {
          kernel: '6.1',
          release: '6.1.0-57-amd64',
          outcome: { kind: 'timed-out', afterSeconds: 600 },
          bootSeconds: 24,
          durationSeconds: 600,
          outDir: join(out, '6.1'),
        },
      ]),
    );
  });

  /** The 6.12 auto result with `figures` added (replacing those of the same name), loaded back. */
  const matrixWithAutoFigures = (figures: Partial<ProofResult['figures']>) => {
    const file = join(out, '6.12', 'results', 'prove-auto.json');
    const result = JSON.parse(readFileSync(file, 'utf8')) as ProofResult;
    writeFileSync(file, JSON.stringify({ ...result, figures: { ...result.figures, ...figures } }));
    return loadMatrix(out, [kernelById('6.12')]);
  };

  afterEach(() => rmSync(out, { recursive: true, force: true }));

  it('shows each figure as agent / kernel and fails on a failed check', () => {
    const report = loadMatrix(out, [kernelById('6.12')]);
    expect(report.passed).toBe(false);
    const table = renderTable(report, '2026-12-04');
    expect(table).toContain('| 111 / 111 (700 rounds)');
    expect(table).toContain('48 / 48 (500 rounds), 48 flows');
    expect(table).toContain('**FAIL**: no unexplained insert failures after ready: agent 14');
    expect(summaryLines(report)[0]).toMatch(
      /^kernel 6\.12 --probe-mode auto: FAIL mode kprobe, ready after 133\.8 s, insert failures 111\/111, clash resolved 48\/48/,
    );
  });

  it('shows the IPv6 race in its own columns, a dash for a result from before it', () => {
    const withIpv6 = (agent: number, snatOfPods: number): string => {
      const report = matrixWithAutoFigures({
        insertFailures6: { agent, kernel: 23, sent: 100, seconds: 9.5, snatOfPods },
      });
      expect(summaryLines(report)[0]).toContain(`IPv6 insert failures ${agent}/23`);
      return renderTable(report, '2026-12-06');
    };

    const equal = withIpv6(23, 23);
    const column = header(equal).indexOf('IPv6 insert failures (snat-race over IPv6)');
    expect(column).toBeGreaterThan(0);
    const [auto, tracepoint] = rows(equal);
    expect(auto!.length).toBe(header(equal).length);
    expect(auto![column]).toBe('23 / 23 (100 rounds)');
    expect(auto![column + 1]).toBe('23 / 23');
    // The tracepoint result carries no IPv6 figures.
    expect(tracepoint![column]).toBe('—');
    expect(tracepoint![column + 1]).toBe('—');

    const [short] = rows(withIpv6(23, 21));
    expect(short![column]).toBe('23 / 23 (100 rounds)');
    expect(short![column + 1]).toBe('21 / 23 **≠**');
    const [over] = rows(withIpv6(25, 23));
    expect(over![column]).toBe('25 / 23 **≠** (100 rounds)');
  });

  it('shows the IPv6 DNS drops in their own columns with the address they were put on, a dash for a result from before them', () => {
    const withDns6 = (agent: number, attributed: number): string => {
      const report = matrixWithAutoFigures({
        dnsFirewall6: {
          agent,
          kernel: 20,
          sent: 20,
          seconds: 4.1,
          attributed,
          source: 'fd00:10:244::2',
        },
        dnsNoListener6: {
          agent: 20,
          kernel: 20,
          sent: 20,
          seconds: 3.9,
          attributed: 20,
          source: '2001:db8::1',
        },
      });
      expect(summaryLines(report)[0]).toContain(
        `IPv6 DNS firewall ${agent}/20, IPv6 DNS no listener 20/20`,
      );
      return renderTable(report, '2026-12-06');
    };

    const equal = withDns6(20, 20);
    const firewall = adjacentColumns(
      equal,
      'IPv6 DNS drops: firewall (`NETFILTER_DROP`), on the client',
      'IPv6 DNS drops: no listener (`NO_SOCKET`), on the client',
    );
    const silent = firewall + 1;
    const [auto, tracepoint] = rows(equal);
    expect(auto!.length).toBe(header(equal).length);
    expect(auto![firewall]).toBe('20 / 20 (20 queries), 20 on fd00:10:244::2');
    expect(auto![silent]).toBe('20 / 20 (20 queries), 20 on 2001:db8::1');
    // The tracepoint result comes from before the IPv6 DNS checks.
    expect(tracepoint!.length).toBe(header(equal).length);
    expect(tracepoint![firewall]).toBe('—');
    expect(tracepoint![silent]).toBe('—');

    // Counted right but put on another address; then counted short.
    const [elsewhere] = rows(withDns6(20, 0));
    expect(elsewhere![firewall]).toBe('20 / 20 (20 queries), 0 on fd00:10:244::2 **≠**');
    const [short] = rows(withDns6(18, 18));
    expect(short![firewall]).toBe('18 / 20 **≠** (20 queries), 18 on fd00:10:244::2 **≠**');
  });

  it('shows the DNS queries answered and unanswered in their own columns, with those put on the firewall, a dash for a result from before them', () => {
    const withQueries = (answered: number, unanswered: number, firewall: number): string => {
      const report = matrixWithAutoFigures({
        dnsAnswered: { agent: answered, kernel: 20, sent: 20, seconds: 14.2 },
        dnsUnanswered: { agent: unanswered, kernel: 7, sent: 16, seconds: 31.5, firewall },
      });
      expect(summaryLines(report)[0]).toContain(
        `DNS answered ${answered}/20, DNS unanswered ${unanswered}/7`,
      );
      return renderTable(report, '2026-12-07');
    };

    const equal = withQueries(20, 7, 7);
    const answered = adjacentColumns(
      equal,
      'DNS queries answered (via the ClusterIP), agent / client',
      'DNS queries unanswered (a backend firewalled), agent / DROP rule',
    );
    const unanswered = answered + 1;
    const [auto, tracepoint] = rows(equal);
    expect(auto!.length).toBe(header(equal).length);
    expect(auto![answered]).toBe('20 / 20 (20 queries)');
    expect(auto![unanswered]).toBe('7 / 7 (16 queries), 7 firewall');
    // The tracepoint result comes from before DNS query tracking was proven.
    expect(tracepoint!.length).toBe(header(equal).length);
    expect(tracepoint![answered]).toBe('—');
    expect(tracepoint![unanswered]).toBe('—');

    // Answers counted twice; unanswered counted right but some put on another cause.
    const [over] = rows(withQueries(40, 7, 5));
    expect(over![answered]).toBe('40 / 20 **≠** (20 queries)');
    expect(over![unanswered]).toBe('7 / 7 (16 queries), 5 firewall **≠**');
    const [short] = rows(withQueries(20, 6, 6));
    expect(short![unanswered]).toBe('6 / 7 **≠** (16 queries), 6 firewall **≠**');
  });

  it('shows the DNAT race to the IPv6 ClusterIP in its own column: a dash in kprobe mode before it, not observable in tracepoint mode', () => {
    const name = 'IPv6 resolved clashes (dnat-clash to an IPv6 ClusterIP)';

    const before = renderTable(loadMatrix(out, [kernelById('6.12')]), '2026-12-06');
    const column = header(before).indexOf(name);
    expect(column).toBe(header(before).indexOf('resolved clashes (dnat-clash)') + 1);
    const [autoBefore, tracepoint] = rows(before);
    expect(autoBefore![column]).toBe('—');
    expect(tracepoint![column]).toBe('not observable');

    const report = matrixWithAutoFigures({
      clashResolved6: { agent: 31, kernel: 33, sent: 400, seconds: 12.5, flows: 31 },
    });
    expect(summaryLines(report)[0]).toContain('clash resolved 48/48, IPv6 clash resolved 31/33');
    const [auto] = rows(renderTable(report, '2026-12-06'));
    expect(auto![column]).toBe('31 / 33 **≠** (400 rounds), 31 flows');
  });

  it('keeps every row as wide as the header when a result is missing', () => {
    const table = renderTable(loadMatrix(out, [kernelById('6.1')]), '2026-12-06');
    const lines = table.split('\n');
    const width = lines.find((line) => line.startsWith('| kernel |'))!.split(' | ').length;
    const missing = lines.filter((line) => line.startsWith('| 6.1 '));
    expect(missing).toHaveLength(2);
    for (const line of missing) expect(line.split(' | ')).toHaveLength(width);
  });

  it('fails a kernel whose guest brought no result back, saying why', () => {
    const report = loadMatrix(out, [kernelById('6.1')]);
    expect(report.passed).toBe(false);
    expect(report.entries.map((entry) => entry.missing)).toEqual([
      'no result: the guest timed out after 600 s',
      'no result: the guest timed out after 600 s',
    ]);
  });

  it('passes when every expected result passed', () => {
    for (const mode of ['auto', 'tracepoint']) {
      const file = join(out, '6.12', 'results', `prove-${mode}.json`);
      const result = JSON.parse(readFileSync(file, 'utf8')) as ProofResult;
      writeFileSync(
        file,
        JSON.stringify({
          ...result,
          checks: result.checks.filter((check) => check.passed),
          passed: true,
        }),
      );
    }
    expect(loadMatrix(out, [kernelById('6.12')]).passed).toBe(true);
  });

  it('rewrites only what lies between the markers, the same way every time', () => {
    const doc = `# Title\n\nbefore\n\n${tableBegin}\nold\n${tableEnd}\n\nafter\n`;
    const table = renderTable(loadMatrix(out, [kernelById('6.12')]), '2026-12-04');
    const once = replaceTable(doc, table);
    expect(once.startsWith('# Title\n\nbefore\n\n')).toBe(true);
    expect(once.endsWith('\n\nafter\n')).toBe(true);
    expect(once).not.toContain('\nold\n');
    expect(replaceTable(once, table)).toBe(once);
  });

  it('refuses a document without its markers', () => {
    expect(() => replaceTable('# no markers\n', 'table')).toThrow(/needs the markers/);
  });

  it('names the file of a result it cannot read', () => {
    expect(() => parseProofResult('{', '6.1/prove-auto.json')).toThrow(
      /^6\.1\/prove-auto\.json: not JSON/,
    );
    expect(() => parseProofResult('{"schema":2}', 'x.json')).toThrow(/not a kernel proof result/);
  });
});
