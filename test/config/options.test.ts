import { parseDoctorOptions } from '../../src/config/doctor-options.js';
import { parseOptions } from '../../src/config/options.js';

describe('command-line options', () => {
  it('defaults to listening on 0.0.0.0:9474 in auto mode', () => {
    const parsed = parseOptions([], {}, '1.0.0');
    expect(parsed).toMatchObject({
      kind: 'run',
      options: {
        listen: { host: '0.0.0.0', port: 9474 },
        probeMode: 'auto',
        logLevel: 'info',
        pollIntervalMs: 5000,
        probeAttachTimeoutMs: 120_000,
      },
    });
  });

  it('prefers flags to the environment and the environment to defaults', () => {
    const env = { NODE_NAME: 'env-node', KUBECONFIG: '/env/kubeconfig', LOG_LEVEL: 'debug' };
    const fromEnv = parseOptions([], env, '1');
    expect(fromEnv).toMatchObject({ options: { nodeName: 'env-node', logLevel: 'debug' } });
    // KUBECONFIG is resolved with the in-cluster fallback by the connection, not as the flag.
    expect(fromEnv.kind === 'run' && fromEnv.options.kubeconfig).toBeUndefined();
    expect(
      parseOptions(
        ['--node-name', 'flag-node', '--kubeconfig', '/flag', '--log-level', 'warn'],
        env,
        '1',
      ),
    ).toMatchObject({ options: { nodeName: 'flag-node', kubeconfig: '/flag', logLevel: 'warn' } });
  });

  it('takes the probe attach timeout in whole seconds, from 10 to 3600', () => {
    for (const [seconds, ms] of [
      ['10', 10_000],
      ['360', 360_000],
      ['3600', 3_600_000],
    ] as const) {
      expect(parseOptions(['--probe-attach-timeout', seconds], {}, '1')).toMatchObject({
        options: { probeAttachTimeoutMs: ms },
      });
    }
  });

  it('reads IPv6 and host-less listen addresses', () => {
    expect(parseOptions(['--listen', '[::1]:9000'], {}, '1')).toMatchObject({
      options: { listen: { host: '::1', port: 9000 } },
    });
    expect(parseOptions(['--listen', ':9000'], {}, '1')).toMatchObject({
      options: { listen: { host: '0.0.0.0', port: 9000 } },
    });
  });

  it('takes NodeLocal DNSCache and cluster DNS addresses of either family, in canonical form', () => {
    expect(
      parseOptions(['--node-local-dns', '169.254.20.10, FD00:0:0::10'], {}, '1'),
    ).toMatchObject({ options: { nodeLocalDns: ['169.254.20.10', 'fd00::10'] } });
    expect(
      parseDoctorOptions([
        '--cluster-dns',
        '10.96.0.10,fd00:10:96::a',
        '--node-local-dns',
        'fd00::10',
      ]),
    ).toMatchObject({
      options: { clusterDns: ['10.96.0.10', 'fd00:10:96::a'], nodeLocalDns: ['fd00::10'] },
    });
    const bad = parseOptions(['--node-local-dns', '10.0.0.1,dns.local'], {}, '1');
    expect(bad.kind === 'error' && bad.message).toMatch(
      /expected IPv4 or IPv6 addresses separated by commas, got "dns.local"/,
    );
  });

  it.each([
    [['--listen', 'nope'], /HOST:PORT/],
    [['--listen', '1.2.3.4:99999'], /HOST:PORT/],
    [['--probe-mode', 'magic'], /Allowed choices are auto, tracepoint, kprobe, counters-only/],
    [['--poll-interval', '0'], /seconds between/],
    [['--probe-attach-timeout', '9'], /whole seconds from 10 to 3600/],
    [['--probe-attach-timeout', '3601'], /whole seconds from 10 to 3600/],
    [['--probe-attach-timeout', '90.5'], /whole seconds from 10 to 3600/],
    [['--probe-attach-timeout', '2m'], /whole seconds from 10 to 3600/],
    [['--probe-attach-timeout', '-30'], /whole seconds from 10 to 3600/],
    [['--netns-pid', '-3'], /positive integer/],
    [['--frobnicate'], /unknown option/],
  ])('rejects %j with a clear message instead of exiting', (argv, message) => {
    const parsed = parseOptions(argv, {}, '1');
    expect(parsed.kind).toBe('error');
    expect(parsed.kind === 'error' && parsed.message).toMatch(message);
  });

  it('rejects a bad LOG_LEVEL from the environment', () => {
    expect(parseOptions([], { LOG_LEVEL: 'loud' }, '1')).toMatchObject({ kind: 'error' });
  });

  it('prints help and the version without running', () => {
    expect(parseOptions(['--version'], {}, '9.9.9')).toEqual({
      kind: 'exit',
      output: '9.9.9\n',
      exitCode: 0,
    });
    const help = parseOptions(['--help'], {}, '1');
    expect(help.kind === 'exit' && help.output).toMatch(/--listen <host:port>/);
  });
});

describe('/metrics security options', () => {
  it('serves /metrics without authentication unless asked', () => {
    expect(parseOptions([], {}, '1')).toMatchObject({ options: { metricsAuth: 'none' } });
  });

  it('takes --metrics-auth from the flag, else METRICS_AUTH', () => {
    expect(parseOptions([], { METRICS_AUTH: 'kubernetes' }, '1')).toMatchObject({
      options: { metricsAuth: 'kubernetes' },
    });
    expect(
      parseOptions(['--metrics-auth=none'], { METRICS_AUTH: 'kubernetes' }, '1'),
    ).toMatchObject({ options: { metricsAuth: 'none' } });
    expect(
      parseOptions(
        [
          '--metrics-auth',
          'kubernetes',
          '--tls-cert-file',
          '/tls/tls.crt',
          '--tls-private-key-file',
          '/tls/tls.key',
        ],
        {},
        '1',
      ),
    ).toMatchObject({
      options: {
        metricsAuth: 'kubernetes',
        tlsCertFile: '/tls/tls.crt',
        tlsPrivateKeyFile: '/tls/tls.key',
      },
    });
  });

  it.each([
    [['--metrics-auth', 'basic'], {}, /Allowed choices are none, kubernetes/],
    [[], { METRICS_AUTH: 'mtls' }, /METRICS_AUTH "mtls" is not one of none, kubernetes/],
    [['--metrics-auth', 'kubernetes', '--tls-cert-file', '/c'], {}, /go together/],
    [['--metrics-auth', 'kubernetes', '--tls-private-key-file', '/k'], {}, /go together/],
    [
      ['--tls-cert-file', '/c', '--tls-private-key-file', '/k'],
      {},
      /only with --metrics-auth kubernetes/,
    ],
  ])('rejects %j %j with a clear message', (argv, env, message) => {
    const parsed = parseOptions(argv, env, '1');
    expect(parsed.kind === 'error' && parsed.message).toMatch(message);
  });
});
