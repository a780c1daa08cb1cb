import { readlink } from 'node:fs/promises';

import {
  conntrackStatPathOf,
  netnsInodeOf,
} from '../../../src/sources/kernel-stats/netns-inode.js';

describe('network namespace of a process', () => {
  it('is the inode readlink shows for /proc/self/ns/net', async () => {
    const link = await readlink('/proc/self/ns/net');
    expect(`net:[${await netnsInodeOf('self')}]`).toBe(link);
  });

  it('is undefined for a process that does not exist', async () => {
    expect(await netnsInodeOf(1, '/nonexistent-proc')).toBeUndefined();
  });

  it('names the stat file of the namespace a process is in', () => {
    expect(conntrackStatPathOf(4242)).toBe('/proc/4242/net/stat/nf_conntrack');
  });
});
