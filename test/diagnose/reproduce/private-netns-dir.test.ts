import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { execa } from 'execa';
import {
  netnsDirWritable,
  privateNetnsCommand,
} from '../../../src/diagnose/reproduce/private-netns-dir.js';
import { waitFor } from '../../support/eventually.js';

describe('where doctor --reproduce keeps its namespaces', () => {
  it.each<[string, readonly string[], readonly string[], boolean]>([
    ['/run/netns writable', ['/run/netns'], ['/run/netns'], true],
    ['/run/netns on a read-only root', ['/run/netns'], [], false],
    ['no /run/netns, /run writable', [], ['/run'], true],
    ['no /run/netns, /run read-only', [], [], false],
  ])('%s', (_, present, writable, expected) => {
    expect(
      netnsDirWritable(
        '/run/netns',
        (path) => writable.includes(path),
        (path) => present.includes(path),
      ),
    ).toBe(expected);
  });

  it('runs a command with a private tmpfs on /run/netns that nothing else sees', async () => {
    const marker = `/run/netns/private-probe-${process.pid}`;
    // A tmpfs may already be on /run/netns here (a container or chroot that mounts one): the
    // private one is one more, seen inside only.
    const tmpfsOnNetnsDir = (mountinfo: string): number =>
      mountinfo.split('\n').filter((line) => / \/run\/netns .* tmpfs /.test(line)).length;
    const outside = tmpfsOnNetnsDir(readFileSync('/proc/self/mountinfo', 'utf8'));
    const command = privateNetnsCommand([
      'sh',
      '-c',
      `touch ${marker} && grep -c " /run/netns .* tmpfs " /proc/self/mountinfo && echo "$CHECK"`,
    ]);
    const result = await execa(command.file, command.args, {
      reject: false,
      env: { CHECK: 'environment kept' },
    });
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    expect(result.stdout.split('\n')).toEqual([String(outside + 1), 'environment kept']);
    expect(existsSync(marker)).toBe(false);
  });

  it('gets SIGTERM (to remove its lab) when the process that started it is killed with SIGKILL', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'private-netns-'));
    try {
      const ready = join(scratch, 'ready');
      const terminated = join(scratch, 'terminated');
      const command = privateNetnsCommand([
        'sh',
        '-c',
        `trap 'echo TERM > ${terminated}; exit 0' TERM; echo $$ > ${ready}; while :; do sleep 0.05; done`,
      ]);
      // The doctor that re-ran itself: it only waits for its child.
      const parent = execa(
        process.execPath,
        [
          '-e',
          'require("node:child_process").spawn(process.argv[1], JSON.parse(process.argv[2]), { stdio: "ignore" }); setInterval(() => {}, 1000);',
          command.file,
          JSON.stringify(command.args),
        ],
        { reject: false },
      );
      await waitFor('the re-run to start', () => existsSync(ready) || undefined, 10_000, 20);
      parent.kill('SIGKILL');
      await parent;
      await waitFor('SIGTERM in the re-run', () => existsSync(terminated) || undefined, 10_000, 20);
      expect(readFileSync(terminated, 'utf8').trim()).toBe('TERM');
    } finally {
      // A failed run must not leave the re-run looping.
      const pid = Number.parseInt(
        existsSync(join(scratch, 'ready')) ? readFileSync(join(scratch, 'ready'), 'utf8') : '',
        10,
      );
      if (Number.isInteger(pid) && pid > 0) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 30_000);
});
