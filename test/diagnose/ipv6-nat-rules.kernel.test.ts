import { createHostFiles } from '../../src/diagnose/host-files.js';
import { netnsAddressesOfPid } from '../../src/diagnose/netns-addresses.js';
import { diagnoseNode } from '../../src/diagnose/node-diagnoser.js';
import { createExecaCommandRunner } from '../../src/detect/capability-sources.js';
import { systemClock } from '../../src/shared/clock.js';
import { newLabId } from '../lab/lab-names.js';
import { pidsIn, run, runIn, spawnIn } from '../lab/netns.js';

// One throw-away network namespace standing for a dual-stack node: an uplink with a
// documentation address of each family, nothing routed out of it. The rules are real kernel
// rule sets, written by ip6tables-nft and nft, read back by the node diagnosis.
describe('IPv6 NAT rules and addresses of a dual-stack node', () => {
  const node = `${newLabId()}-node`;
  let sleeper: ReturnType<typeof spawnIn> | undefined;

  const read = () =>
    diagnoseNode({
      files: createHostFiles(),
      procRoot: '/proc',
      netnsPid: 'self',
      run: createExecaCommandRunner(),
      commandPrefix: ['ip', 'netns', 'exec', node],
      nodeLocalDnsIps: [],
      clock: systemClock,
    });

  beforeAll(async () => {
    await run('ip', ['netns', 'add', node]);
    await runIn(node, 'ip', ['link', 'set', 'lo', 'up']);
    // No router solicitations: nothing but the test's own rule sets is wanted here.
    await runIn(node, 'sysctl', ['-qw', 'net.ipv6.conf.default.router_solicitations=0']);
    // A veth pair with both ends inside: an uplink that leads nowhere.
    await runIn(node, 'ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
    await runIn(node, 'ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'up0']);
    await runIn(node, 'ip', ['-6', 'addr', 'add', '2001:db8:0:0::1/64', 'dev', 'up0', 'nodad']);
    await runIn(node, 'ip', ['link', 'set', 'up0', 'up']);
    await runIn(node, 'ip', ['link', 'set', 'up1', 'up']);
  });

  afterAll(async () => {
    sleeper?.kill('SIGKILL');
    await sleeper;
    await run('ip', ['netns', 'del', node], { check: false });
  });

  it('reads the IPv6 rule sets and sees --random-fully on ip6tables-nft and fully-random in an inet table', async () => {
    const before = await read();
    expect(before.natRules).toEqual([]);
    expect(before.natSources.find((s) => s.backend === 'ip6tables-nft')?.read).toBe(true);

    for (const extra of [['--random-fully'], []]) {
      await runIn(node, 'ip6tables-nft', [
        '-t',
        'nat',
        '-A',
        'POSTROUTING',
        '-s',
        'fd00:10:244::/64',
        '-o',
        'up0',
        '-j',
        'MASQUERADE',
        ...extra,
      ]);
    }
    await runIn(node, 'nft', ['add', 'table', 'inet', 'lab-snat']);
    await runIn(node, 'nft', [
      'add chain inet lab-snat post { type nat hook postrouting priority 110; }',
    ]);
    await runIn(node, 'nft', [
      'add rule inet lab-snat post ip6 saddr fd00:10:244::/64 masquerade fully-random',
    ]);
    await runIn(node, 'nft', ['add rule inet lab-snat post ip saddr 10.244.0.0/24 masquerade']);

    const after = await read();
    expect(after.natRules.map((r) => [r.backend, r.family, r.target, r.randomFully])).toEqual([
      ['ip6tables-nft', 'ipv6', 'MASQUERADE', true],
      ['ip6tables-nft', 'ipv6', 'MASQUERADE', false],
      ['nftables', 'both', 'MASQUERADE', true],
      ['nftables', 'both', 'MASQUERADE', false],
    ]);
    expect(after.natRules[0]?.text).toContain('--random-fully');
    expect(after.natRules[2]?.text).toMatch(
      /^inet lab-snat post handle \d+: masquerade fully-random$/,
    );
    expect(after.natSources.find((s) => s.backend === 'nftables')?.read).toBe(true);
  });

  it("finds the namespace's addresses of both families from /proc without entering it", async () => {
    sleeper = spawnIn(node, 'sleep', ['600']);
    let pid: number | undefined;
    for (let tries = 0; pid === undefined && tries < 100; tries += 1) {
      pid = (await pidsIn(node))[0];
      if (pid === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(pid).toBeDefined();
    const addresses = await netnsAddressesOfPid(createHostFiles(), '/proc', pid as number);
    expect(addresses?.sort()).toEqual(['192.0.2.1', '2001:db8::1']);
  });
});
