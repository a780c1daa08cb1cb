/**
 * A Kubernetes API server at the HTTP level, for tests: node:http on port 0, real Kubernetes
 * JSON, list and watch with resourceVersion, field selectors, bookmarks, 410 Gone, injected
 * failures and latency, going down and coming back, and Event create/patch with the API
 * server's own validation of namespaces and patch content types. @kubernetes/client-node talks
 * to it exactly as it would to a real server.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import {
  createServer,
  request as createHttpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';

export type ResourceName = 'pods' | 'services' | 'endpointslices' | 'nodes' | 'events';

interface ResourceInfo {
  readonly kind: string;
  readonly apiVersion: string;
  readonly prefix: string;
  readonly namespaced: boolean;
  /** The field selectors the real API server supports for this resource. */
  readonly fields: readonly string[];
}

const RESOURCES: Record<ResourceName, ResourceInfo> = {
  pods: {
    kind: 'Pod',
    apiVersion: 'v1',
    prefix: '/api/v1',
    namespaced: true,
    fields: [
      'metadata.name',
      'metadata.namespace',
      'spec.nodeName',
      'spec.restartPolicy',
      'spec.schedulerName',
      'spec.serviceAccountName',
      'spec.hostNetwork',
      'status.phase',
      'status.podIP',
      'status.nominatedNodeName',
    ],
  },
  services: {
    kind: 'Service',
    apiVersion: 'v1',
    prefix: '/api/v1',
    namespaced: true,
    fields: ['metadata.name', 'metadata.namespace', 'spec.clusterIP', 'spec.type'],
  },
  endpointslices: {
    kind: 'EndpointSlice',
    apiVersion: 'discovery.k8s.io/v1',
    prefix: '/apis/discovery.k8s.io/v1',
    namespaced: true,
    fields: ['metadata.name', 'metadata.namespace', 'addressType'],
  },
  nodes: {
    kind: 'Node',
    apiVersion: 'v1',
    prefix: '/api/v1',
    namespaced: false,
    fields: ['metadata.name', 'spec.unschedulable'],
  },
  events: {
    kind: 'Event',
    apiVersion: 'v1',
    prefix: '/api/v1',
    namespaced: true,
    fields: [
      'metadata.name',
      'metadata.namespace',
      'involvedObject.kind',
      'involvedObject.namespace',
      'involvedObject.name',
      'involvedObject.uid',
      'involvedObject.apiVersion',
      'involvedObject.resourceVersion',
      'involvedObject.fieldPath',
      'reason',
      'reportingComponent',
      'source',
      'type',
    ],
  },
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type K8sObject = Record<string, any>;

interface Change {
  readonly rv: number;
  readonly resource: ResourceName;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: K8sObject;
  readonly previous?: K8sObject;
}

interface Watcher {
  readonly resource: ResourceName;
  readonly namespace?: string;
  readonly selector: FieldRequirement[];
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
  timer?: NodeJS.Timeout;
}

interface FieldRequirement {
  readonly field: string;
  readonly value: string;
  readonly equals: boolean;
}

export interface RequestInfo {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly resource?: ResourceName;
  readonly watch: boolean;
}

export interface FaultOptions {
  readonly status: number;
  /** How many matching requests fail; unlimited when absent (until `clear()`). */
  readonly times?: number;
  /** Which requests: a resource, "watch", "list", "events" (writes), or a predicate. Default all. */
  readonly match?:
    ResourceName | 'watch' | 'list' | 'event-writes' | ((request: RequestInfo) => boolean);
  readonly retryAfterSeconds?: number;
  /**
   * Process the request, then reset the connection instead of answering: the write happened
   * but the client never learns it (`status` is then ignored).
   */
  readonly loseAnswer?: boolean;
}

export interface Fault {
  /** Matching requests that were failed so far. */
  readonly failed: number;
  clear(): void;
}

export interface EventWrite {
  readonly method: 'POST' | 'PATCH';
  readonly namespace: string;
  readonly name: string;
  readonly contentType: string;
  readonly body: unknown;
  readonly status: number;
}

export interface CallCounts {
  readonly lists: number;
  readonly pages: number;
  readonly watches: number;
}

export interface FakeApiServerOptions {
  readonly pods?: readonly K8sObject[];
  readonly services?: readonly K8sObject[];
  readonly endpointSlices?: readonly K8sObject[];
  readonly nodes?: readonly K8sObject[];
  /** Bearer token the server requires (as a real one would). */
  readonly token?: string;
}

/** Whom a token authenticates as, in a TokenReview's status.user. */
export interface FakeUser {
  readonly username: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

/** A non-resource rule bound to a user or a group, as RBAC's nonResourceURLs. */
export interface NonResourceGrant {
  /** A username, or `group:NAME`. */
  readonly subject: string;
  /** An exact path, or a prefix ending in `*`. */
  readonly path: string;
  readonly verbs: readonly string[];
}

export interface FakeApiServer {
  readonly url: string;
  readonly port: number;
  readonly token: string;
  kubeConfig(): KubeConfig;
  /** Writes a kubeconfig file for `--kubeconfig` / `KUBECONFIG` and returns its path. */
  kubeConfigFile(): Promise<string>;
  /** Creates or replaces an object (ADDED or MODIFIED for watchers); returns it as stored. */
  apply(resource: ResourceName, object: K8sObject): K8sObject;
  /** Deletes an object (DELETED for watchers); returns it as it was, or undefined. */
  remove(resource: ResourceName, namespace: string, name: string): K8sObject | undefined;
  get(resource: ResourceName, namespace: string, name: string): K8sObject | undefined;
  list(resource: ResourceName): K8sObject[];
  /** The latest resourceVersion. */
  resourceVersion(): number;
  /** Sends a BOOKMARK to every watcher that asked for bookmarks. */
  bookmark(): void;
  /** Forgets history: watches from older resourceVersions get 410 Gone. */
  compact(): void;
  /** Answers the next watch of `resource` (or any) with 410 Gone: an ERROR event, or an HTTP 410. */
  goneOnNextWatch(options?: { resource?: ResourceName; as?: 'event' | 'http' }): void;
  /** Ends every open watch stream cleanly, as a server-side timeout does. */
  endWatches(): void;
  failRequests(options: FaultOptions): Fault;
  /** Delays every response (or those matching) by `ms`. */
  setLatency(ms: number, match?: (request: RequestInfo) => boolean): void;
  /** Closes the listener and every connection; requests are refused until `up()`. */
  down(): Promise<void>;
  up(): Promise<void>;
  /** Event objects as stored, in creation order. */
  events(): K8sObject[];
  /** Every Event POST/PATCH received, answered or not. */
  eventWrites(): EventWrite[];
  requests(): RequestInfo[];
  /** Makes TokenReviews of `token` authenticate `user`; other tokens are not authenticated. */
  addTokenUser(token: string, user: FakeUser): void;
  /** Lets a subject `verbs` a non-resource URL in SubjectAccessReviews (RBAC nonResourceURLs). */
  grantNonResource(grant: NonResourceGrant): void;
  /** TokenReview (`tokenreviews`) or SubjectAccessReview (`subjectaccessreviews`) creations. */
  reviewCount(kind: 'tokenreviews' | 'subjectaccessreviews'): number;
  /** The spec of every SubjectAccessReview received, in order. */
  accessReviewSpecs(): K8sObject[];
  /**
   * Answers `GET /api/v1/namespaces/<ns>/pods/[<scheme>:]<name>:<port>/proxy/<path>` by
   * forwarding to `target` (e.g. `http://127.0.0.1:<port>` of a server the test runs), as the
   * API server's pod proxy does. The caller's Authorization header is not forwarded, and an
   * `https:` target's certificate is not verified (kube-apiserver dials pods by IP with
   * InsecureSkipVerify and no client certificate).
   */
  proxyPod(namespace: string, name: string, port: number, target: string): void;
  /** Open watch streams. */
  watcherCount(resource?: ResourceName): number;
  /**
   * List and watch requests so far (of `resource`, or all): `lists` counts first pages (a
   * whole list), `pages` every list request, `watches` every watch request.
   */
  callCounts(resource?: ResourceName): CallCounts;
  close(): Promise<void>;
}

export async function startFakeApiServer(
  options: FakeApiServerOptions = {},
): Promise<FakeApiServer> {
  const fake = new FakeApiServerImpl(options.token ?? 'fake-token');
  for (const pod of options.pods ?? []) fake.apply('pods', pod);
  for (const service of options.services ?? []) fake.apply('services', service);
  for (const slice of options.endpointSlices ?? []) fake.apply('endpointslices', slice);
  for (const node of options.nodes ?? []) fake.apply('nodes', node);
  await fake.listen(0);
  return fake;
}

class FakeApiServerImpl implements FakeApiServer {
  port = 0;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly store = new Map<ResourceName, Map<string, K8sObject>>();
  private readonly history: Change[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly faults: Array<FaultOptions & { remaining: number; failed: number }> = [];
  private readonly gone: Array<{ resource?: ResourceName; as: 'event' | 'http' }> = [];
  private readonly requestLog: RequestInfo[] = [];
  private readonly writes: EventWrite[] = [];
  private readonly tempDirs: string[] = [];
  private readonly tokenUsers = new Map<string, FakeUser>();
  private readonly grants: NonResourceGrant[] = [];
  private readonly accessReviews: K8sObject[] = [];
  private readonly podProxies = new Map<string, string>();
  private latency: { ms: number; match?: (request: RequestInfo) => boolean } = { ms: 0 };
  private rv = 1000;
  private compactedRv = 0;
  /** Paginated lists in progress: the snapshot each continue token reads from. */
  private readonly snapshots = new Map<number, { items: K8sObject[]; rv: number }>();
  private nextSnapshot = 1;
  private readonly counts = new Map<
    ResourceName,
    { lists: number; pages: number; watches: number }
  >();

  constructor(readonly token: string) {
    for (const resource of Object.keys(RESOURCES) as ResourceName[])
      this.store.set(resource, new Map());
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) sendStatus(res, 500, 'InternalError', String(error));
        else res.destroy();
      });
    });
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        const address = this.server.address();
        if (address && typeof address === 'object') this.port = address.port;
        resolve();
      });
    });
  }

  kubeConfig(): KubeConfig {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake', token: this.token }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    });
    return kubeConfig;
  }

  async kubeConfigFile(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'fake-apiserver-'));
    this.tempDirs.push(dir);
    const path = join(dir, 'kubeconfig');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake', user: { token: this.token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
      'current-context': 'fake',
    };
    // JSON is YAML: client-node and kubectl read it as a kubeconfig.
    await writeFile(path, JSON.stringify(config, null, 2));
    return path;
  }

  apply(resource: ResourceName, object: K8sObject): K8sObject {
    const objects = this.store.get(resource)!;
    const key = keyOf(object);
    const previous = objects.get(key);
    // Stored bare: a list's items carry no kind/apiVersion; single objects get them on the way out.
    const stored = structuredClone(object);
    delete stored.kind;
    delete stored.apiVersion;
    stored.metadata ??= {};
    stored.metadata.uid ??= previous?.metadata?.uid ?? randomUUID();
    stored.metadata.creationTimestamp ??= previous?.metadata?.creationTimestamp ?? nowRfc3339();
    stored.metadata.resourceVersion = String(++this.rv);
    objects.set(key, stored);
    this.publish({
      rv: this.rv,
      resource,
      type: previous ? 'MODIFIED' : 'ADDED',
      object: stored,
      previous,
    });
    return structuredClone(stored);
  }

  remove(resource: ResourceName, namespace: string, name: string): K8sObject | undefined {
    const objects = this.store.get(resource)!;
    const key = RESOURCES[resource].namespaced ? `${namespace}/${name}` : `/${name}`;
    const previous = objects.get(key);
    if (!previous) return undefined;
    objects.delete(key);
    const deleted = structuredClone(previous);
    deleted.metadata.resourceVersion = String(++this.rv);
    this.publish({ rv: this.rv, resource, type: 'DELETED', object: deleted, previous });
    return structuredClone(previous);
  }

  get(resource: ResourceName, namespace: string, name: string): K8sObject | undefined {
    const key = RESOURCES[resource].namespaced ? `${namespace}/${name}` : `/${name}`;
    const object = this.store.get(resource)!.get(key);
    return object ? structuredClone(object) : undefined;
  }

  list(resource: ResourceName): K8sObject[] {
    return [...this.store.get(resource)!.values()].map((object) => structuredClone(object));
  }

  resourceVersion(): number {
    return this.rv;
  }

  bookmark(): void {
    for (const watcher of this.watchers) {
      if (!watcher.bookmarks) continue;
      const { kind, apiVersion } = RESOURCES[watcher.resource];
      writeLine(watcher.res, {
        type: 'BOOKMARK',
        object: { kind, apiVersion, metadata: { resourceVersion: String(this.rv) } },
      });
    }
  }

  compact(): void {
    this.compactedRv = this.rv;
    this.history.length = 0;
  }

  goneOnNextWatch(options: { resource?: ResourceName; as?: 'event' | 'http' } = {}): void {
    this.gone.push({ resource: options.resource, as: options.as ?? 'event' });
  }

  endWatches(): void {
    for (const watcher of [...this.watchers]) this.endWatch(watcher);
  }

  failRequests(options: FaultOptions): Fault {
    const fault = { ...options, remaining: options.times ?? Number.POSITIVE_INFINITY, failed: 0 };
    this.faults.push(fault);
    return {
      get failed() {
        return fault.failed;
      },
      clear: () => {
        const index = this.faults.indexOf(fault);
        if (index >= 0) this.faults.splice(index, 1);
      },
    };
  }

  setLatency(ms: number, match?: (request: RequestInfo) => boolean): void {
    this.latency = { ms, match };
  }

  async down(): Promise<void> {
    for (const watcher of [...this.watchers]) {
      if (watcher.timer) clearTimeout(watcher.timer);
      this.watchers.delete(watcher);
    }
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  async up(): Promise<void> {
    await this.listen(this.port);
  }

  events(): K8sObject[] {
    // A Map keeps insertion order, and a patch does not move the entry: creation order.
    return [...this.store.get('events')!.values()].map((object) => withKind('events', object));
  }

  eventWrites(): EventWrite[] {
    return [...this.writes];
  }

  requests(): RequestInfo[] {
    return [...this.requestLog];
  }

  addTokenUser(token: string, user: FakeUser): void {
    this.tokenUsers.set(token, user);
  }

  grantNonResource(grant: NonResourceGrant): void {
    this.grants.push(grant);
  }

  reviewCount(kind: 'tokenreviews' | 'subjectaccessreviews'): number {
    return this.requestLog.filter(
      (request) => request.method === 'POST' && request.path === REVIEW_PATHS[kind],
    ).length;
  }

  accessReviewSpecs(): K8sObject[] {
    return structuredClone(this.accessReviews);
  }

  callCounts(resource?: ResourceName): CallCounts {
    const total = { lists: 0, pages: 0, watches: 0 };
    for (const [name, counts] of this.counts) {
      if (resource && name !== resource) continue;
      total.lists += counts.lists;
      total.pages += counts.pages;
      total.watches += counts.watches;
    }
    return total;
  }

  watcherCount(resource?: ResourceName): number {
    return [...this.watchers].filter((watcher) => !resource || watcher.resource === resource)
      .length;
  }

  /** Stops the server and removes the kubeconfig files it wrote. */
  async close(): Promise<void> {
    for (const dir of this.tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
    if (this.server.listening) await this.down();
  }

  private publish(change: Change): void {
    this.history.push(change);
    for (const watcher of this.watchers) {
      if (watcher.resource === change.resource) this.deliver(watcher, change);
    }
  }

  /** Sends a change as the watcher's selector sees it: moving into or out of it is ADDED/DELETED. */
  private deliver(watcher: Watcher, change: Change): void {
    const now = this.visible(watcher, change.object);
    const before = change.previous !== undefined && this.visible(watcher, change.previous);
    let type: Change['type'] | undefined;
    if (change.type === 'DELETED') type = before ? 'DELETED' : undefined;
    else if (now && before) type = 'MODIFIED';
    else if (now) type = 'ADDED';
    else if (before) type = 'DELETED';
    if (!type) return;
    writeLine(watcher.res, { type, object: withKind(watcher.resource, change.object) });
  }

  private visible(watcher: Watcher, object: K8sObject): boolean {
    if (watcher.namespace !== undefined && object.metadata?.namespace !== watcher.namespace)
      return false;
    return matchesSelector(object, watcher.selector);
  }

  private endWatch(watcher: Watcher): void {
    if (watcher.timer) clearTimeout(watcher.timer);
    this.watchers.delete(watcher);
    watcher.res.end();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const route = parseRoute(url.pathname);
    const watch = url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1';
    const info: RequestInfo = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      resource: route?.resource,
      watch,
    };
    this.requestLog.push(info);
    if (route && info.method === 'GET' && route.name === undefined) {
      const counts = this.counts.get(route.resource) ?? { lists: 0, pages: 0, watches: 0 };
      if (watch) counts.watches += 1;
      else {
        counts.pages += 1;
        if (!url.searchParams.get('continue')) counts.lists += 1;
      }
      this.counts.set(route.resource, counts);
    }
    const body = await readBody(req);
    // unref: a request held back longer than a test runs must not keep jest waiting for it.
    if (this.latency.ms > 0 && (!this.latency.match || this.latency.match(info)))
      await sleep(this.latency.ms, undefined, { ref: false });
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
      return;
    }
    const fault = this.faults.find(
      (candidate) => candidate.remaining > 0 && faultMatches(candidate, info),
    );
    if (fault?.loseAnswer) {
      fault.remaining -= 1;
      fault.failed += 1;
      await this.route(req, info, url, route, body, discardingResponse());
      req.socket.destroy();
      return;
    }
    if (fault) {
      fault.remaining -= 1;
      fault.failed += 1;
      if (fault.retryAfterSeconds !== undefined)
        res.setHeader('Retry-After', String(fault.retryAfterSeconds));
      if (info.resource === 'events' && info.method !== 'GET')
        this.recordWrite(req, route, body, fault.status);
      sendStatus(res, fault.status, reasonOf(fault.status), `injected failure ${fault.status}`);
      return;
    }
    await this.route(req, info, url, route, body, res);
  }

  private async route(
    req: IncomingMessage,
    info: RequestInfo,
    url: URL,
    route: Route | undefined,
    body: string,
    res: ServerResponse,
  ): Promise<void> {
    const watch = info.watch;
    if (req.method === 'POST' && info.path === REVIEW_PATHS.tokenreviews) {
      this.tokenReview(body, res);
      return;
    }
    if (req.method === 'POST' && info.path === REVIEW_PATHS.subjectaccessreviews) {
      this.subjectAccessReview(body, res);
      return;
    }
    const proxy = POD_PROXY.exec(info.path);
    if (proxy && req.method === 'GET') {
      await this.forwardToPod(proxy, url, res);
      return;
    }
    if (!route) {
      sendStatus(res, 404, 'NotFound', 'the server could not find the requested resource');
      return;
    }
    const { resource, namespace, name } = route;
    if (req.method === 'GET' && name === undefined) {
      if (watch) this.serveWatch(resource, namespace, url.searchParams, res);
      else this.serveList(resource, namespace, url.searchParams, res);
      return;
    }
    if (req.method === 'GET' && name !== undefined) {
      const object = this.get(resource, namespace ?? '', name);
      if (!object) sendStatus(res, 404, 'NotFound', notFoundMessage(resource, name));
      else sendJson(res, 200, withKind(resource, object));
      return;
    }
    if (
      resource === 'events' &&
      req.method === 'POST' &&
      namespace !== undefined &&
      name === undefined
    ) {
      this.createEvent(req, namespace, body, res);
      return;
    }
    if (
      resource === 'events' &&
      req.method === 'PATCH' &&
      namespace !== undefined &&
      name !== undefined
    ) {
      this.patchEvent(req, namespace, name, body, res);
      return;
    }
    sendStatus(
      res,
      405,
      'MethodNotAllowed',
      `the server does not allow this method on the requested resource`,
    );
  }

  proxyPod(namespace: string, name: string, port: number, target: string): void {
    this.podProxies.set(`${namespace}/${name}:${port}`, target);
  }

  private async forwardToPod(match: RegExpExecArray, url: URL, res: ServerResponse): Promise<void> {
    const [, namespace = '', scheme, name = '', port = '', rest = ''] = match;
    const pod = this.get('pods', namespace, decodeURIComponent(name));
    if (!pod) {
      sendStatus(res, 404, 'NotFound', notFoundMessage('pods', name));
      return;
    }
    const target = this.podProxies.get(`${namespace}/${decodeURIComponent(name)}:${port}`);
    if (!target || (scheme !== undefined && !target.startsWith(`${scheme}:`))) {
      sendStatus(
        res,
        503,
        'ServiceUnavailable',
        `error trying to reach service: dial tcp ${pod.status?.podIP ?? ''}:${port}: connect: connection refused`,
      );
      return;
    }
    const answer = await getUnverified(`${target}/${rest}${url.search}`);
    const headers: Record<string, string> = {};
    if (answer.contentType) headers['content-type'] = answer.contentType;
    res.writeHead(answer.status, headers).end(answer.body);
  }

  /**
   * As kube-apiserver answers a TokenReview: 201 with the spec echoed and status.authenticated
   * and status.user for a known token; for an unknown one, no `authenticated` (false is
   * omitted), an empty user and an error.
   */
  private tokenReview(body: string, res: ServerResponse): void {
    const review = parseJson(body);
    if (review?.kind !== 'TokenReview' || review.apiVersion !== 'authentication.k8s.io/v1') {
      sendStatus(res, 400, 'BadRequest', 'the object provided is unrecognized');
      return;
    }
    const token = String(review.spec?.token ?? '');
    const user = token ? this.tokenUsers.get(token) : undefined;
    const status: K8sObject = user
      ? {
          authenticated: true,
          user: {
            username: user.username,
            ...(user.uid ? { uid: user.uid } : {}),
            ...(user.groups ? { groups: [...user.groups, 'system:authenticated'] } : {}),
            ...(user.extra ? { extra: user.extra } : {}),
          },
          audiences: ['https://kubernetes.default.svc.cluster.local'],
        }
      : { user: {}, error: '[invalid bearer token, token lookup failed]' };
    sendJson(res, 201, {
      kind: 'TokenReview',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec: review.spec ?? {},
      status,
    });
  }

  /**
   * As kube-apiserver answers a SubjectAccessReview: 422 unless exactly one of
   * resourceAttributes/nonResourceAttributes and a user or group are given; else 201 with
   * status.allowed (always present) and, when allowed, RBAC's reason.
   */
  private subjectAccessReview(body: string, res: ServerResponse): void {
    const review = parseJson(body);
    if (review?.kind !== 'SubjectAccessReview' || review.apiVersion !== 'authorization.k8s.io/v1') {
      sendStatus(res, 400, 'BadRequest', 'the object provided is unrecognized');
      return;
    }
    const spec: K8sObject = review.spec ?? {};
    this.accessReviews.push(structuredClone(spec));
    const problems: string[] = [];
    if (Boolean(spec.resourceAttributes) === Boolean(spec.nonResourceAttributes)) {
      problems.push(
        'spec.nonResourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified',
      );
    }
    if (!spec.user && !(Array.isArray(spec.groups) && spec.groups.length > 0)) {
      problems.push(
        'spec.user: Invalid value: "": at least one of user or group must be specified',
      );
    }
    if (problems.length > 0) {
      sendStatus(
        res,
        422,
        'Invalid',
        `SubjectAccessReview.authorization.k8s.io "" is invalid: ${problems.join(', ')}`,
      );
      return;
    }
    const subjects = new Set<string>([
      String(spec.user ?? ''),
      ...((spec.groups ?? []) as string[]).map((group) => `group:${group}`),
    ]);
    const path = String(spec.nonResourceAttributes?.path ?? '');
    const verb = String(spec.nonResourceAttributes?.verb ?? '');
    const grant = spec.nonResourceAttributes
      ? this.grants.find(
          (candidate) =>
            subjects.has(candidate.subject) &&
            (candidate.verbs.includes(verb) || candidate.verbs.includes('*')) &&
            (candidate.path === path ||
              (candidate.path.endsWith('*') && path.startsWith(candidate.path.slice(0, -1)))),
        )
      : undefined;
    sendJson(res, 201, {
      kind: 'SubjectAccessReview',
      apiVersion: 'authorization.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec,
      status: grant
        ? {
            allowed: true,
            reason: `RBAC: allowed by ClusterRoleBinding "fake" of ClusterRole "fake" to ${grant.subject}`,
          }
        : { allowed: false },
    });
  }

  private serveList(
    resource: ResourceName,
    namespace: string | undefined,
    query: URLSearchParams,
    res: ServerResponse,
  ): void {
    const selector = parseSelector(resource, query.get('fieldSelector'));
    if (selector instanceof Error) {
      sendStatus(res, 400, 'BadRequest', selector.message);
      return;
    }
    const { kind, apiVersion } = RESOURCES[resource];
    const limit = Number(query.get('limit') ?? '');
    const token = query.get('continue');
    let snapshot: { items: K8sObject[]; rv: number } | undefined;
    let offset = 0;
    let id = 0;
    if (token) {
      const parsed = parseContinue(token);
      snapshot = parsed ? this.snapshots.get(parsed.id) : undefined;
      if (!parsed || !snapshot) {
        sendStatus(res, 410, 'Expired', 'The provided continue parameter is too old');
        return;
      }
      ({ id, offset } = parsed);
    } else {
      const items = [...this.store.get(resource)!.values()]
        .filter((object) => namespace === undefined || object.metadata?.namespace === namespace)
        .filter((object) => matchesSelector(object, selector))
        .filter((object) => matchesLabels(object, query.get('labelSelector')))
        .sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
      snapshot = { items, rv: this.rv };
    }
    // Without a limit, everything at once; with one, a page of the snapshot the first page took.
    const end = Number.isInteger(limit) && limit > 0 ? offset + limit : snapshot.items.length;
    const more = end < snapshot.items.length;
    if (more && id === 0) {
      id = this.nextSnapshot++;
      this.snapshots.set(id, snapshot);
    }
    if (!more && id !== 0) this.snapshots.delete(id);
    // Items of a real list carry no kind/apiVersion: only the list does.
    sendJson(res, 200, {
      kind: `${kind}List`,
      apiVersion,
      metadata: {
        resourceVersion: String(snapshot.rv),
        ...(more ? { continue: formatContinue({ id, offset: end }) } : {}),
      },
      items: snapshot.items.slice(offset, end),
    });
  }

  private serveWatch(
    resource: ResourceName,
    namespace: string | undefined,
    query: URLSearchParams,
    res: ServerResponse,
  ): void {
    const selector = parseSelector(resource, query.get('fieldSelector'));
    if (selector instanceof Error) {
      sendStatus(res, 400, 'BadRequest', selector.message);
      return;
    }
    const goneIndex = this.gone.findIndex(
      (entry) => !entry.resource || entry.resource === resource,
    );
    const requested = query.get('resourceVersion') ?? '';
    const fromRv = requested === '' || requested === '0' ? undefined : Number(requested);
    const tooOld = fromRv !== undefined && (!Number.isFinite(fromRv) || fromRv < this.compactedRv);
    if (goneIndex >= 0 || tooOld) {
      const as = goneIndex >= 0 ? this.gone.splice(goneIndex, 1)[0]!.as : 'event';
      const message = `too old resource version: ${requested} (${this.compactedRv || this.rv})`;
      if (as === 'http') {
        sendStatus(res, 410, 'Expired', message);
      } else {
        // What a real server does: 200, one ERROR event carrying a 410 Status, end of stream.
        res.writeHead(200, { 'Content-Type': 'application/json' });
        writeLine(res, { type: 'ERROR', object: statusBody(410, 'Expired', message) });
        res.end();
      }
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const watcher: Watcher = {
      resource,
      namespace,
      selector,
      bookmarks: query.get('allowWatchBookmarks') === 'true',
      res,
    };
    if (fromRv === undefined) {
      // "Start at most recent" / "any": the current state as ADDED events.
      for (const object of this.store.get(resource)!.values()) {
        if (this.visible(watcher, object))
          writeLine(res, { type: 'ADDED', object: withKind(resource, object) });
      }
    } else {
      for (const change of this.history) {
        if (change.resource === resource && change.rv > fromRv) this.deliver(watcher, change);
      }
    }
    this.watchers.add(watcher);
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? '');
    if (Number.isFinite(timeoutSeconds) && timeoutSeconds > 0) {
      watcher.timer = setTimeout(() => this.endWatch(watcher), timeoutSeconds * 1000);
      watcher.timer.unref();
    }
    res.on('close', () => {
      if (watcher.timer) clearTimeout(watcher.timer);
      this.watchers.delete(watcher);
    });
  }

  private createEvent(
    req: IncomingMessage,
    namespace: string,
    body: string,
    res: ServerResponse,
  ): void {
    const contentType = mediaType(req);
    const parsed = parseJson(body);
    const respond = (status: number, payload: K8sObject) => {
      this.writes.push({
        method: 'POST',
        namespace,
        name: String(parsed?.metadata?.name ?? ''),
        contentType,
        body: parsed,
        status,
      });
      sendJson(res, status, payload);
    };
    if (contentType !== 'application/json') {
      respond(
        415,
        statusBody(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf`,
        ),
      );
      return;
    }
    if (!parsed || typeof parsed !== 'object') {
      respond(400, statusBody(400, 'BadRequest', 'the object provided is unrecognized'));
      return;
    }
    const problems = validateEvent(parsed, namespace);
    if (problems.length > 0) {
      respond(
        422,
        statusBody(
          422,
          'Invalid',
          `Event "${parsed.metadata?.name ?? ''}" is invalid: ${problems.join(', ')}`,
        ),
      );
      return;
    }
    const event = structuredClone(parsed);
    event.metadata.namespace = namespace;
    if (!event.metadata.name)
      event.metadata.name = `${event.metadata.generateName}${randomUUID().slice(0, 5)}`;
    if (this.get('events', namespace, event.metadata.name)) {
      respond(
        409,
        statusBody(409, 'AlreadyExists', `events "${event.metadata.name}" already exists`),
      );
      return;
    }
    const stored = this.apply('events', event);
    respond(201, withKind('events', stored));
  }

  private patchEvent(
    req: IncomingMessage,
    namespace: string,
    name: string,
    body: string,
    res: ServerResponse,
  ): void {
    const contentType = mediaType(req);
    const parsed = parseJson(body);
    const respond = (status: number, payload: K8sObject) => {
      this.writes.push({ method: 'PATCH', namespace, name, contentType, body: parsed, status });
      sendJson(res, status, payload);
    };
    const current = this.get('events', namespace, name);
    let patched: K8sObject;
    if (
      contentType === 'application/merge-patch+json' ||
      contentType === 'application/strategic-merge-patch+json'
    ) {
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
        respond(
          400,
          statusBody(
            400,
            'BadRequest',
            'json: cannot unmarshal array into Go value of type map[string]interface {}',
          ),
        );
        return;
      }
      if (!current) {
        respond(404, statusBody(404, 'NotFound', notFoundMessage('events', name)));
        return;
      }
      patched = mergePatch(current, parsed);
    } else if (contentType === 'application/json-patch+json') {
      if (!Array.isArray(parsed)) {
        respond(
          400,
          statusBody(
            400,
            'BadRequest',
            'json: cannot unmarshal object into Go value of type jsonpatch.Patch',
          ),
        );
        return;
      }
      if (!current) {
        respond(404, statusBody(404, 'NotFound', notFoundMessage('events', name)));
        return;
      }
      const result = applyJsonPatch(current, parsed);
      if (result instanceof Error) {
        respond(422, statusBody(422, 'Invalid', result.message));
        return;
      }
      patched = result;
    } else {
      respond(
        415,
        statusBody(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`,
        ),
      );
      return;
    }
    if (patched.metadata?.name !== name || patched.metadata?.namespace !== namespace) {
      respond(
        400,
        statusBody(400, 'BadRequest', 'the name or namespace of the object may not be changed'),
      );
      return;
    }
    const stored = this.apply('events', patched);
    respond(200, withKind('events', stored));
  }

  private recordWrite(
    req: IncomingMessage,
    route: Route | undefined,
    body: string,
    status: number,
  ): void {
    const parsed = parseJson(body);
    this.writes.push({
      method: req.method === 'PATCH' ? 'PATCH' : 'POST',
      namespace: route?.namespace ?? '',
      name: route?.name ?? String(parsed?.metadata?.name ?? ''),
      contentType: mediaType(req),
      body: parsed,
      status,
    });
  }
}

const REVIEW_PATHS = {
  tokenreviews: '/apis/authentication.k8s.io/v1/tokenreviews',
  subjectaccessreviews: '/apis/authorization.k8s.io/v1/subjectaccessreviews',
} as const;

interface Route {
  readonly resource: ResourceName;
  readonly namespace?: string;
  readonly name?: string;
}

/** Continue tokens are opaque to clients; here they name a snapshot and an offset in it. */
function formatContinue(position: { id: number; offset: number }): string {
  return Buffer.from(JSON.stringify(position)).toString('base64url');
}

function parseContinue(token: string): { id: number; offset: number } | undefined {
  try {
    const value = JSON.parse(Buffer.from(token, 'base64url').toString()) as unknown;
    if (
      typeof value === 'object' &&
      value !== null &&
      'id' in value &&
      'offset' in value &&
      typeof value.id === 'number' &&
      typeof value.offset === 'number'
    )
      return { id: value.id, offset: value.offset };
  } catch {
    // not a token of this server
  }
  return undefined;
}

/** A GET with no credentials, not verifying an https server's certificate: the pod proxy's dial. */
function getUnverified(
  target: string,
): Promise<{ status: number; contentType?: string; body: string }> {
  const url = new URL(target);
  const request = url.protocol === 'https:' ? httpsRequest : createHttpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = request(url, { method: 'GET', rejectUnauthorized: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('error', reject);
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          ...(response.headers['content-type']
            ? { contentType: response.headers['content-type'] }
            : {}),
          body,
        }),
      );
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

/** `/api/v1/namespaces/<ns>/pods/[<scheme>:]<name>[:<port>]/proxy/<path>`. */
const POD_PROXY =
  /^\/api\/v1\/namespaces\/([^/]+)\/pods\/(?:(https?):)?([^/:]+):(\d+)\/proxy\/(.*)$/;

function parseRoute(pathname: string): Route | undefined {
  for (const resource of Object.keys(RESOURCES) as ResourceName[]) {
    const { prefix, namespaced } = RESOURCES[resource];
    if (!pathname.startsWith(`${prefix}/`)) continue;
    const parts = pathname
      .slice(prefix.length + 1)
      .split('/')
      .map(decodeURIComponent);
    if (parts[0] === resource && parts.length <= 2) {
      // Cluster-wide collection, or a cluster-scoped object by name.
      if (parts.length === 2 && namespaced) continue;
      return { resource, name: parts[1] };
    }
    if (namespaced && parts[0] === 'namespaces' && parts[2] === resource && parts.length <= 4) {
      return { resource, namespace: parts[1], name: parts[3] };
    }
  }
  return undefined;
}

function parseSelector(resource: ResourceName, raw: string | null): FieldRequirement[] | Error {
  if (!raw) return [];
  const requirements: FieldRequirement[] = [];
  for (const term of raw.split(',')) {
    const match = /^([^!=]+)(!=|==|=)(.*)$/.exec(term.trim());
    if (!match) return new Error(`invalid selector: '${raw}'; can't understand '${term}'`);
    const [, field, op, value] = match as unknown as [string, string, string, string];
    if (!RESOURCES[resource].fields.includes(field)) {
      return new Error(`field label not supported: ${field}`);
    }
    requirements.push({ field, value, equals: op !== '!=' });
  }
  return requirements;
}

/** Equality-based label selectors (`a=b,c==d,e!=f`), the form the agent's tools send. */
function matchesLabels(object: K8sObject, raw: string | null): boolean {
  if (!raw) return true;
  const labels: Record<string, string> = object.metadata?.labels ?? {};
  return raw.split(',').every((term) => {
    const match = /^([^!=]+)(!=|==|=)(.*)$/.exec(term.trim());
    if (!match) return false;
    const [, key = '', op, value] = match;
    return (labels[key] === value) === (op !== '!=');
  });
}

function matchesSelector(object: K8sObject, selector: readonly FieldRequirement[]): boolean {
  return selector.every((requirement) => {
    let value: unknown = object;
    for (const part of requirement.field.split('.'))
      value = (value as K8sObject | undefined)?.[part];
    const text = value === undefined || value === null ? '' : String(value);
    return (text === requirement.value) === requirement.equals;
  });
}

function faultMatches(fault: FaultOptions, info: RequestInfo): boolean {
  const match = fault.match;
  if (match === undefined) return true;
  if (typeof match === 'function') return match(info);
  if (match === 'watch') return info.watch;
  if (match === 'list') return info.method === 'GET' && !info.watch;
  if (match === 'event-writes') return info.resource === 'events' && info.method !== 'GET';
  return info.resource === match;
}

/**
 * The checks of the API server's Event validation that a client can get wrong: the namespace
 * must match the involved object's (cluster-scoped objects: "default"), a name is required,
 * involvedObject and reason present, reportingComponent a qualified name.
 */
function validateEvent(event: K8sObject, namespace: string): string[] {
  const problems: string[] = [];
  const involved = event.involvedObject;
  if (!event.metadata?.name && !event.metadata?.generateName)
    problems.push('metadata.name: Required value: name or generateName is required');
  if (event.metadata?.namespace && event.metadata.namespace !== namespace) {
    problems.push('metadata.namespace: Invalid value: does not match the namespace of the request');
  }
  if (!involved || typeof involved !== 'object') {
    problems.push('involvedObject: Required value');
  } else if (!involved.namespace) {
    if (namespace !== 'default' && namespace !== '') {
      problems.push(`involvedObject.namespace: Invalid value: "": does not match event.namespace`);
    }
  } else if (involved.namespace !== namespace) {
    problems.push(
      `involvedObject.namespace: Invalid value: "${involved.namespace}": does not match event.namespace`,
    );
  }
  if (
    event.reportingComponent &&
    !/^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(event.reportingComponent)
  ) {
    problems.push(`reportingController: Invalid value: "${event.reportingComponent}"`);
  }
  if (event.reportingInstance && String(event.reportingInstance).length > 128) {
    problems.push('reportingInstance: Too long: may not be longer than 128');
  }
  return problems;
}

/** RFC 7386 JSON merge patch (what strategic merge does for an Event's scalar fields). */
function mergePatch(target: K8sObject, patch: K8sObject): K8sObject {
  const result = structuredClone(target);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) Reflect.deleteProperty(result, key);
    else if (
      typeof value === 'object' &&
      !Array.isArray(value) &&
      typeof result[key] === 'object' &&
      result[key] !== null
    ) {
      result[key] = mergePatch(result[key], value);
    } else result[key] = structuredClone(value);
  }
  return result;
}

/** RFC 6902, the operations on plain paths that an Event patch would use. */
function applyJsonPatch(target: K8sObject, operations: unknown[]): K8sObject | Error {
  const result = structuredClone(target);
  for (const operation of operations) {
    const { op, path, value } = operation as { op?: string; path?: string; value?: unknown };
    if (!path?.startsWith('/') || (op !== 'replace' && op !== 'add' && op !== 'remove')) {
      return new Error(`unsupported json patch operation ${JSON.stringify(operation)}`);
    }
    const parts = path
      .slice(1)
      .split('/')
      .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
    let parent: K8sObject = result;
    for (const part of parts.slice(0, -1)) {
      if (typeof parent[part] !== 'object' || parent[part] === null)
        return new Error(`path ${path} not found`);
      parent = parent[part];
    }
    const last = parts[parts.length - 1]!;
    if (op === 'remove') Reflect.deleteProperty(parent, last);
    else if (op === 'replace' && !(last in parent))
      return new Error(`replace operation does not apply: doc is missing key: ${path}`);
    else parent[last] = value;
  }
  return result;
}

function keyOf(object: K8sObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}

function withKind(resource: ResourceName, object: K8sObject): K8sObject {
  const { kind, apiVersion } = RESOURCES[resource];
  return structuredClone({ kind, apiVersion, ...object });
}

function statusBody(code: number, reason: string, message: string): K8sObject {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code,
  };
}

function reasonOf(status: number): string {
  const reasons: Record<number, string> = {
    400: 'BadRequest',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'NotFound',
    409: 'AlreadyExists',
    410: 'Expired',
    422: 'Invalid',
    429: 'TooManyRequests',
    500: 'InternalError',
    503: 'ServiceUnavailable',
    504: 'Timeout',
  };
  return reasons[status] ?? 'Unknown';
}

function notFoundMessage(resource: ResourceName, name: string): string {
  return `${resource} "${name}" not found`;
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, statusBody(code, reason, message));
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

function writeLine(res: ServerResponse, body: unknown): void {
  if (!res.writableEnded) res.write(`${JSON.stringify(body)}\n`);
}

/** Takes a response nobody will read. */
function discardingResponse(): ServerResponse {
  const sink = {
    headersSent: false,
    writableEnded: false,
    setHeader: () => sink,
    writeHead: () => sink,
    flushHeaders: () => undefined,
    write: () => true,
    end: () => sink,
    on: () => sink,
  };
  return sink as unknown as ServerResponse;
}

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

function parseJson(text: string): K8sObject | undefined {
  try {
    return JSON.parse(text) as K8sObject;
  } catch {
    return undefined;
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}
