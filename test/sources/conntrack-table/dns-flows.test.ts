import { describe, expect, it } from '@jest/globals';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createExecaCommandRunner } from '../../../src/detect/capability-sources.js';
import { dnsFlowReader } from '../../../src/sources/conntrack-table/dns-flows.js';

const FIXTURE = fileURLToPath(
  new URL('../../fixtures/conntrack/list-udp-53-backend-stopped.txt', import.meta.url),
);

/** A tiny real `conntrack` stand-in: a shell script, run through the real execa runner. */
function fakeConntrack(body: string): { path: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'cro-conntrack-'));
  const path = join(dir, 'conntrack');
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return { path, done: () => rmSync(dir, { recursive: true, force: true }) };
}

const reader = (conntrackPath: string, commandPrefix: string[] = [], maxOutputBytes = 1 << 20) =>
  dnsFlowReader({
    run: createExecaCommandRunner(),
    conntrackPath,
    commandPrefix,
    timeoutMs: 10_000,
    maxOutputBytes,
  });

describe('dnsFlowReader', () => {
  it("lists the UDP entries to port 53, through the prefix that enters the node's namespace", async () => {
    // The prefix runs the command it is given, as nsenter does; the script checks its arguments.
    const tool = fakeConntrack(
      `[ "$*" = "-L -p udp --orig-port-dst 53" ] || { echo "args: $*" >&2; exit 2; }\ncat '${FIXTURE}'\necho 'conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.' >&2`,
    );
    try {
      const result = await reader(tool.path, ['env'])();
      expect(result).toMatchObject({ ok: true, list: { malformed: 0 } });
      expect(result.ok && result.list.entries.length).toBeGreaterThan(0);
    } finally {
      tool.done();
    }
  });

  it('says why when conntrack fails, is absent or prints past the bound', async () => {
    const failing = fakeConntrack(
      `echo 'conntrack v1.4.7 (conntrack-tools): Operation failed: Permission denied' >&2; exit 1`,
    );
    const flooding = fakeConntrack(`for i in $(seq 1 200); do cat '${FIXTURE}'; done`);
    try {
      const failed = await reader(failing.path)();
      expect(failed).toEqual({
        ok: false,
        error: expect.stringMatching(/exit code 1: .*Permission denied/),
      });
      const absent = await reader('/nonexistent/conntrack')();
      expect(absent).toMatchObject({
        ok: false,
        error: expect.stringContaining('/nonexistent/conntrack'),
      });
      const flooded = await reader(flooding.path, [], 4096)();
      expect(flooded).toEqual({
        ok: false,
        error: expect.stringContaining('output past 4096 bytes'),
      });
    } finally {
      failing.done();
      flooding.done();
    }
  });
});
