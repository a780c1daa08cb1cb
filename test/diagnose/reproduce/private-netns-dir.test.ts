import { existsSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { execa } from 'execa';
import {
  netnsDirWritable,
  privateNetnsCommand,
} from '../../../src/diagnose/reproduce/private-netns-dir.js';

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
    expect(result.stdout.split('\n')).toEqual(['1', 'environment kept']);
    expect(existsSync(marker)).toBe(false);
  });
});
