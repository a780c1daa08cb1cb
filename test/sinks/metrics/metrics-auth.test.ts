import fc from 'fast-check';
import {
  bearerToken,
  MetricsAuthorizer,
  type ReviewApi,
} from '../../../src/sinks/metrics/metrics-auth.js';
import { kubernetesReviewApi } from '../../../src/sinks/metrics/kubernetes-review-api.js';
import { startFakeApiServer, type FakeApiServer } from '../../support/fake-apiserver.js';
import { ManualClock } from '../../support/manual-clock.js';
import { propertyParameters } from '../../support/property.js';

const PROMETHEUS = {
  username: 'system:serviceaccount:monitoring:prometheus',
  uid: '6b4f3c1e-0000-4000-8000-000000000001',
  groups: ['system:serviceaccounts', 'system:serviceaccounts:monitoring'],
  extra: { 'authentication.kubernetes.io/pod-name': ['prometheus-0'] },
};
const STRANGER = { username: 'system:serviceaccount:default:stranger', groups: [] };

describe('bearer token of an Authorization header', () => {
  it.each([
    [undefined, undefined],
    ['', undefined],
    ['Bearer', undefined],
    ['Bearer ', undefined],
    ['Basic dXNlcjpwYXNz', undefined],
    ['Bearer a b', undefined],
    ['Bearer tok"en', undefined],
    ['Bearertoken', undefined],
    ['Bearer abc.def-ghi_jkl', 'abc.def-ghi_jkl'],
    ['bearer abc', 'abc'],
    ['BEARER  abc==', 'abc=='],
    ['  Bearer abc  ', 'abc'],
  ])('reads %j as %j', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });

  it('gives back any token68 token it is given, and never a token with a space', () => {
    const token68 = fc.stringMatching(/^[A-Za-z0-9\-._~+/]+=*$/);
    fc.assert(
      fc.property(token68, fc.constantFrom('Bearer', 'bearer', 'BeArEr'), (token, scheme) => {
        expect(bearerToken(`${scheme} ${token}`)).toBe(token);
      }),
      propertyParameters(200),
    );
    fc.assert(
      fc.property(fc.string(), (header) => {
        const token = bearerToken(header);
        if (token !== undefined) expect(token).toMatch(/^[^\s]+$/);
      }),
      propertyParameters(500),
    );
  });
});

describe('metrics authorizer against the API server', () => {
  let fake: FakeApiServer;
  let clock: ManualClock;
  let authorizer: MetricsAuthorizer;

  beforeEach(async () => {
    fake = await startFakeApiServer();
    fake.addTokenUser('prometheus-token', PROMETHEUS);
    fake.addTokenUser('stranger-token', STRANGER);
    fake.grantNonResource({ subject: PROMETHEUS.username, path: '/metrics', verbs: ['get'] });
    clock = new ManualClock();
    authorizer = new MetricsAuthorizer({
      api: kubernetesReviewApi(fake.kubeConfig()),
      nowMs: () => clock.nowMs(),
    });
  });

  afterEach(async () => {
    await fake.close();
  });

  it('refuses a request without a token, asking the API server nothing', async () => {
    expect(await authorizer.authorize(undefined)).toMatchObject({ status: 401 });
    expect(await authorizer.authorize('Basic dXNlcjpwYXNz')).toMatchObject({ status: 401 });
    expect(fake.reviewCount('tokenreviews')).toBe(0);
  });

  it('refuses a token the API server does not authenticate', async () => {
    expect(await authorizer.authorize('Bearer forged')).toEqual({
      status: 401,
      reason: 'token not authenticated',
    });
    expect(fake.reviewCount('subjectaccessreviews')).toBe(0);
  });

  it('forbids an authenticated user without get on /metrics, and allows one with it', async () => {
    expect(await authorizer.authorize('Bearer stranger-token')).toEqual({
      status: 403,
      user: STRANGER.username,
    });
    expect(await authorizer.authorize('Bearer prometheus-token')).toEqual({
      status: 200,
      user: PROMETHEUS.username,
    });
  });

  it('asks about get on /metrics for the user exactly as the TokenReview named it', async () => {
    await authorizer.authorize('Bearer prometheus-token');
    expect(fake.accessReviewSpecs()).toEqual([
      {
        user: PROMETHEUS.username,
        uid: PROMETHEUS.uid,
        groups: [...PROMETHEUS.groups, 'system:authenticated'],
        extra: PROMETHEUS.extra,
        nonResourceAttributes: { path: '/metrics', verb: 'get' },
      },
    ]);
  });

  it('allows through a group binding, passing the groups from the TokenReview', async () => {
    fake.grantNonResource({
      subject: 'group:system:serviceaccounts:default',
      path: '/metr*',
      verbs: ['*'],
    });
    fake.addTokenUser('grouped', {
      username: 'system:serviceaccount:default:x',
      groups: ['system:serviceaccounts:default'],
    });
    expect(await authorizer.authorize('Bearer grouped')).toMatchObject({ status: 200 });
  });

  it('remembers an allowed token for 2 minutes and a denied one for 30 s', async () => {
    await authorizer.authorize('Bearer prometheus-token');
    await authorizer.authorize('Bearer stranger-token');
    await authorizer.authorize('Bearer forged');
    expect(fake.reviewCount('tokenreviews')).toBe(3);
    clock.advance(29_000);
    for (const token of ['prometheus-token', 'stranger-token', 'forged'])
      await authorizer.authorize(`Bearer ${token}`);
    expect(fake.reviewCount('tokenreviews')).toBe(3);
    clock.advance(2_000);
    expect(await authorizer.authorize('Bearer stranger-token')).toMatchObject({ status: 403 });
    expect(await authorizer.authorize('Bearer forged')).toMatchObject({ status: 401 });
    expect(await authorizer.authorize('Bearer prometheus-token')).toMatchObject({ status: 200 });
    expect(fake.reviewCount('tokenreviews')).toBe(5);
    clock.advance(90_000);
    expect(await authorizer.authorize('Bearer prometheus-token')).toMatchObject({ status: 200 });
    expect(fake.reviewCount('tokenreviews')).toBe(6);
    expect(fake.reviewCount('subjectaccessreviews')).toBe(4);
  });

  it('sees a newly granted right once the denied decision expires', async () => {
    expect(await authorizer.authorize('Bearer stranger-token')).toMatchObject({ status: 403 });
    fake.grantNonResource({ subject: STRANGER.username, path: '/metrics', verbs: ['get'] });
    expect(await authorizer.authorize('Bearer stranger-token')).toMatchObject({ status: 403 });
    clock.advance(30_001);
    expect(await authorizer.authorize('Bearer stranger-token')).toMatchObject({ status: 200 });
  });

  it('shares one review between concurrent requests with the same token', async () => {
    const decisions = await Promise.all(
      Array.from({ length: 5 }, () => authorizer.authorize('Bearer prometheus-token')),
    );
    expect(decisions.map((d) => d.status)).toEqual([200, 200, 200, 200, 200]);
    expect(fake.reviewCount('tokenreviews')).toBe(1);
  });

  it('fails closed and remembers nothing when the API server cannot answer', async () => {
    const fault = fake.failRequests({
      status: 503,
      match: (r) => r.path.endsWith('/tokenreviews'),
    });
    expect(await authorizer.authorize('Bearer prometheus-token')).toMatchObject({
      status: 401,
      reason: expect.stringMatching(/^TokenReview failed/),
    });
    fault.clear();
    const sar = fake.failRequests({
      status: 500,
      match: (r) => r.path.endsWith('/subjectaccessreviews'),
    });
    expect(await authorizer.authorize('Bearer prometheus-token')).toMatchObject({
      status: 500,
      reason: expect.stringMatching(/^SubjectAccessReview failed/),
    });
    sar.clear();
    expect(await authorizer.authorize('Bearer prometheus-token')).toMatchObject({ status: 200 });
    await fake.down();
    // Cached: a scrape still succeeds for as long as the decision holds.
    expect(await authorizer.authorize('Bearer prometheus-token')).toMatchObject({ status: 200 });
    expect(await authorizer.authorize('Bearer stranger-token')).toMatchObject({ status: 401 });
  });

  it('keeps at most maxEntries tokens, forgetting the oldest, and stores no token', async () => {
    const small = new MetricsAuthorizer({
      api: kubernetesReviewApi(fake.kubeConfig()),
      nowMs: () => clock.nowMs(),
      maxEntries: 2,
    });
    for (const token of ['a', 'b', 'c', 'prometheus-token'])
      await small.authorize(`Bearer ${token}`);
    expect(small.size).toBe(2);
    expect(
      JSON.stringify([...(small as unknown as { cache: Map<string, unknown> }).cache.keys()]),
    ).not.toContain('prometheus-token');
    await small.authorize('Bearer c');
    expect(fake.reviewCount('tokenreviews')).toBe(4);
    await small.authorize('Bearer a');
    expect(fake.reviewCount('tokenreviews')).toBe(5);
  });
});

describe('metrics authorizer decisions', () => {
  it('never allows when the review API says not authenticated or not allowed', async () => {
    const api: ReviewApi = {
      reviewToken: async (token) => (token === 'yes' ? { username: 'u' } : undefined),
      mayAccess: async () => false,
    };
    const authorizer = new MetricsAuthorizer({ api, nowMs: () => 0 });
    expect((await authorizer.authorize('Bearer yes')).status).toBe(403);
    expect((await authorizer.authorize('Bearer no')).status).toBe(401);
  });
});
