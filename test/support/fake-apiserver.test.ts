import { afterEach, describe, expect, it } from '@jest/globals';
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Event,
} from '@kubernetes/client-node';
import { fixture } from './k8s-fixtures.js';
import { startFakeApiServer, type FakeApiServer } from './fake-apiserver.js';

let fake: FakeApiServer | undefined;

afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

const event = (): CoreV1Event => {
  const body = fixture('event-conntrack-insert-failed');
  delete body.metadata.resourceVersion;
  delete body.metadata.uid;
  delete body.metadata.creationTimestamp;
  return body as CoreV1Event;
};

async function get(path: string, token = 'fake-token'): Promise<{ status: number; text: string }> {
  const response = await fetch(`${fake!.url}${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: response.status, text: await response.text() };
}

describe('fake API server', () => {
  it('rejects a PATCH sent with client-node’s default content type, as a real server does', async () => {
    fake = await startFakeApiServer();
    const core = fake.kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespacedEvent({ namespace: 'default', body: event() });
    const name = event().metadata.name!;
    // client-node 1.x picks application/json-patch+json unless told otherwise.
    await expect(
      core.patchNamespacedEvent({ namespace: 'default', name, body: { count: 42 } }),
    ).rejects.toMatchObject({ code: 400 });
    await core.patchNamespacedEvent(
      { namespace: 'default', name, body: { count: 42 } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(fake.events()[0]!.count).toBe(42);
    expect(fake.eventWrites().map((w) => w.contentType)).toEqual([
      'application/json',
      'application/json-patch+json',
      'application/merge-patch+json',
    ]);
  });

  it('rejects an Event whose namespace does not match its involved object', async () => {
    fake = await startFakeApiServer();
    const core = fake.kubeConfig().makeApiClient(CoreV1Api);
    await expect(
      core.createNamespacedEvent({ namespace: 'kube-system', body: event() }),
    ).rejects.toMatchObject({ code: 422 });
  });

  it('answers a watch from a compacted resourceVersion with the ERROR 410 event a real server sends', async () => {
    fake = await startFakeApiServer({ nodes: [fixture('node-lab-node')] });
    fake.compact();
    const { status, text } = await get('/api/v1/nodes?watch=true&resourceVersion=5');
    expect(status).toBe(200);
    const line = JSON.parse(text.trim()) as Record<string, unknown>;
    const real = fixture('watch-error-410-expired');
    expect(Object.keys(line).sort()).toEqual(Object.keys(real).sort());
    expect(line).toMatchObject({
      type: 'ERROR',
      object: { kind: 'Status', code: 410, reason: 'Expired' },
    });
  });

  it('refuses unsupported field selectors and requests without the token', async () => {
    fake = await startFakeApiServer();
    expect((await get('/api/v1/pods?fieldSelector=spec.hostname%3Dx')).status).toBe(400);
    expect((await get('/api/v1/pods', 'wrong')).status).toBe(401);
  });

  it('lists with the collection’s resourceVersion and items without kind, filtered by field selector', async () => {
    fake = await startFakeApiServer({
      pods: [
        fixture('pod-dns-client-a'),
        { ...fixture('pod-coredns'), spec: { nodeName: 'elsewhere' } },
      ],
    });
    const { text } = await get('/api/v1/pods?fieldSelector=spec.nodeName%3Dlab-node');
    const list = JSON.parse(text) as {
      kind: string;
      metadata: { resourceVersion: string };
      items: Array<Record<string, unknown>>;
    };
    expect(list.kind).toBe('PodList');
    expect(list.metadata.resourceVersion).toBe(String(fake.resourceVersion()));
    expect(list.items).toHaveLength(1);
    expect(list.items[0]!.kind).toBeUndefined();
  });

  it('answers token and access reviews as a real server does, validating the access review', async () => {
    fake = await startFakeApiServer();
    fake.addTokenUser('t1', { username: 'alice', groups: ['team'] });
    fake.grantNonResource({ subject: 'group:team', path: '/metrics', verbs: ['get'] });
    const post = async (path: string, body: unknown) => {
      const response = await fetch(`${fake!.url}${path}`, {
        method: 'POST',
        headers: { authorization: 'Bearer fake-token', 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const tokenReview = (token: string) =>
      post('/apis/authentication.k8s.io/v1/tokenreviews', {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token },
      });
    expect(await tokenReview('t1')).toMatchObject({
      status: 201,
      body: {
        kind: 'TokenReview',
        status: {
          authenticated: true,
          user: { username: 'alice', groups: ['team', 'system:authenticated'] },
        },
      },
    });
    const unknown = await tokenReview('nope');
    expect(unknown.body['status']).toEqual({
      user: {},
      error: expect.stringContaining('invalid bearer token'),
    });
    const access = (spec: unknown) =>
      post('/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec,
      });
    const nonResourceAttributes = { path: '/metrics', verb: 'get' };
    expect(
      (await access({ user: 'alice', groups: ['team'], nonResourceAttributes })).body,
    ).toMatchObject({
      status: { allowed: true },
    });
    expect((await access({ user: 'bob', nonResourceAttributes })).body['status']).toEqual({
      allowed: false,
    });
    expect((await access({ nonResourceAttributes })).status).toBe(422);
    expect((await access({ user: 'alice' })).status).toBe(422);
    expect(fake.reviewCount('tokenreviews')).toBe(2);
    expect(fake.reviewCount('subjectaccessreviews')).toBe(4);
  });
});
