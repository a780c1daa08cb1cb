import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Lifecycle } from '../../shared/lifecycle.js';

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
}

/** Serves /metrics, /healthz (the process answers) and /readyz (probes attached, API synced). */
export class MetricsServer implements Lifecycle {
  readonly name = 'http';
  private readonly server: Server;
  private listening = false;

  constructor(private readonly options: MetricsServerOptions) {
    this.server = createServer((request, response) => this.respond(request, response));
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
    switch (path) {
      case '/metrics':
        this.options.registry.metrics().then(
          (body) => {
            response
              .writeHead(200, { 'content-type': this.options.registry.contentType })
              .end(body);
          },
          (error: unknown) => {
            response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`);
          },
        );
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
}
