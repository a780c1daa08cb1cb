import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Lifecycle } from '../../shared/lifecycle.js';
import type { AuthDecision } from './metrics-auth.js';
import type { PodStoryLookup } from './pod-story.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready (or what is ready), shown on /readyz so an operator sees it in probes. */
  detail: string;
}

export interface MetricsServerOptions {
  host: string;
  port: number;
  registry: Registry;
  readiness: () => Readiness;
  /** PEM certificate and key: the server then speaks only TLS (plain HTTP is not answered). */
  tls?: { readonly cert: string; readonly key: string };
  /**
   * Decides who may read /metrics from the request's `Authorization` header; absent, anyone
   * may. /healthz and /readyz stay open: the kubelet probes them without a token.
   */
  authorize?: (authorization: string | undefined) => Promise<AuthDecision>;
  /** Told of a refused or failed authorization (not of each allowed scrape). */
  onAuthRefused?: (decision: Exclude<AuthDecision, { status: 200 }>) => void;
  /**
   * Serves `GET /pods/<namespace>/<name>`: a pod's counts, diagnosis and remedies as JSON,
   * behind the same authorization as /metrics. Absent: 404.
   */
  podStory?: PodStoryLookup;
}

/** `/pods/<namespace>/<name>`: DNS-label names, percent-decoded. */
const POD_PATH = /^\/pods\/([^/]+)\/([^/]+)$/;

/** Serves /metrics, /healthz (the process answers) and /readyz (probes attached, API synced). */
export class MetricsServer implements Lifecycle {
  readonly name = 'http';
  private readonly server: Server | TlsServer;
  private listening = false;

  constructor(private readonly options: MetricsServerOptions) {
    const handler = (request: IncomingMessage, response: ServerResponse): void =>
      this.respond(request, response);
    // Throws on a certificate or key that is not PEM, or a key that does not match.
    this.server = options.tls
      ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, handler)
      : createServer(handler);
    // Scrapes use keep-alive; without this, close() would wait for idle scrape connections.
    this.server.keepAliveTimeout = 5_000;
  }

  /** Listens; rejects when the address cannot be bound (in use, not local, no permission). */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
  }

  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  stop(): Promise<void> {
    if (!this.listening) return Promise.resolve();
    this.listening = false;
    return new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private respond(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const [, namespace, name] = (path === undefined ? null : POD_PATH.exec(path)) ?? [];
    const lookup = this.options.podStory;
    if (namespace !== undefined && name !== undefined && lookup) {
      this.authorized(request, response, () => this.servePod(response, lookup, namespace, name));
      return;
    }
    switch (path) {
      case '/metrics':
        this.authorized(request, response, () => this.serveMetrics(response));
        return;
      case '/healthz':
        response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        const { ready, detail } = this.options.readiness();
        response
          .writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
          .end(`${ready ? 'ready' : 'not ready'}: ${detail}\n`);
        return;
      }
      default:
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }

  /** Serves when the request may read /metrics (anyone, without an authorizer). */
  private authorized(request: IncomingMessage, response: ServerResponse, serve: () => void): void {
    if (!this.options.authorize) {
      serve();
      return;
    }
    this.options.authorize(request.headers.authorization).then(
      (decision) => {
        if (decision.status === 200) serve();
        else this.refuse(response, decision);
      },
      (error: unknown) => this.refuse(response, { status: 500, reason: String(error) }),
    );
  }

  private servePod(
    response: ServerResponse,
    lookup: PodStoryLookup,
    rawNamespace: string,
    rawName: string,
  ): void {
    let story;
    try {
      story = lookup(decodeURIComponent(rawNamespace), decodeURIComponent(rawName));
    } catch (error) {
      const status = error instanceof URIError ? 400 : 500;
      response.writeHead(status, { 'content-type': 'text/plain' }).end(`${String(error)}\n`);
      return;
    }
    if (!story) {
      response
        .writeHead(404, { 'content-type': 'application/json' })
        .end(`${JSON.stringify({ error: 'pod not known to this agent' })}\n`);
      return;
    }
    response
      .writeHead(200, { 'content-type': 'application/json' })
      .end(`${JSON.stringify(story)}\n`);
  }

  private serveMetrics(response: ServerResponse): void {
    this.options.registry.metrics().then(
      (body) => {
        response.writeHead(200, { 'content-type': this.options.registry.contentType }).end(body);
      },
      (error: unknown) => {
        response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`);
      },
    );
  }

  /** The answer names the status only: why a token failed is for the agent's log, not the caller. */
  private refuse(response: ServerResponse, decision: Exclude<AuthDecision, { status: 200 }>): void {
    this.options.onAuthRefused?.(decision);
    const text = { 401: 'Unauthorized', 403: 'Forbidden', 500: 'Internal Server Error' };
    const headers: Record<string, string> = { 'content-type': 'text/plain' };
    if (decision.status === 401) headers['www-authenticate'] = 'Bearer realm="metrics"';
    response.writeHead(decision.status, headers).end(`${text[decision.status]}\n`);
  }
}
