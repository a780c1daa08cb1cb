import { execa } from 'execa';
import { Ajv } from 'ajv';
import { doctorReportSchema } from '../../src/diagnose/doctor/report-schema.js';
import type { DoctorReport } from '../../src/diagnose/doctor/report.js';
import { createLab, type Lab } from '../lab/index.js';
import { repoRoot } from '../deploy/support/repo-paths.js';

// The real command, run as the image runs it (node on the entry point, through tsx here so
// that it needs no build), on this machine and against a lab node.
const doctor = (args: readonly string[]) =>
  execa('npx', ['tsx', 'src/main.ts', 'doctor', ...args], {
    cwd: repoRoot,
    reject: false,
    timeout: 60_000,
  });

const validate = new Ajv({ allErrors: true }).compile(doctorReportSchema);

function report(stdout: string): DoctorReport {
  const parsed: unknown = JSON.parse(stdout);
  if (!validate(parsed))
    throw new Error(`doctor --json does not match its schema: ${JSON.stringify(validate.errors)}`);
  return parsed as unknown as DoctorReport;
}

describe('conntrack-race-observer doctor', () => {
  it('reports this machine in text and JSON that matches its schema; exit 0 only without findings', async () => {
    const json = await doctor(['--json', '--interval', '0.5']);
    const parsed = report(json.stdout);
    expect(parsed.node.kernel?.release).toBe((await execa('uname', ['-r'])).stdout);
    expect(parsed.counters?.intervalSeconds).toBeGreaterThan(0.4);
    expect(json.exitCode).toBe(parsed.findings.length > 0 ? 1 : 0);

    const text = await doctor(['--interval', '0.5']);
    expect(text.stdout).toContain(`Kernel        ${parsed.node.kernel?.release}`);
    expect(text.stdout).toMatch(/Probe mode {4}(tracepoint|kprobe|counters-only)/);
    expect(text.exitCode).toBe(json.exitCode);
  });

  it('exits 2 on bad usage, saying what is wrong', async () => {
    const bad = await doctor(['--interval', 'soon']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('expected seconds');
    expect((await doctor(['--node-local-dns', '999.1.1.1'])).exitCode).toBe(2);
  });

  describe('on a lab node', () => {
    let lab: Lab;
    beforeAll(async () => {
      lab = await createLab();
    });
    afterAll(async () => {
      await lab?.destroy();
    });

    it('finds the MASQUERADE rule without --random-fully and the pods resolving through NAT: exit 1', async () => {
      const result = await doctor([
        '--json',
        '--interval',
        '0.2',
        '--netns-pid',
        String(lab.node.pid),
        '--cluster-dns',
        '10.96.0.10',
      ]);
      const parsed = report(result.stdout);
      expect(result.exitCode).toBe(1);
      expect(parsed.node.natRules).toEqual([
        expect.objectContaining({ target: 'MASQUERADE', randomFully: false }),
      ]);
      expect(parsed.node.kubeProxyMode).toBe('iptables');
      expect(parsed.findings.map((f) => f.id)).toContain('snat-without-random-fully');
    });
  });
});
