import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentDeathPrefix } from '../../src/sources/bpftrace/probe-process.js';

/** One series of an instant vector answered by `/api/v1/query`. */
export interface VectorSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: readonly [number, string];
}

/** An alert as `/api/v1/alerts` lists it. */
export interface PrometheusAlert {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly state: 'pending' | 'firing' | 'inactive';
  readonly activeAt: string;
  readonly value: string;
}

export type QueryAnswer =
  | { readonly ok: true; readonly resultType: string; readonly samples: readonly VectorSample[] }
  | { readonly ok: false; readonly error: string };

export interface PrometheusServer {
  readonly url: string;
  /** Everything Prometheus wrote to stderr, for failure messages. */
  readonly output: () => string;
  query(expr: string): Promise<QueryAnswer>;
  alerts(): Promise<PrometheusAlert[]>;
  /** Scrape targets' health as `/api/v1/targets` reports it. */
  targetHealth(): Promise<string[]>;
  /** SIGTERM, then SIGKILL if it lingers; removes its storage and configuration. */
  stop(): Promise<void>;
}

export interface PrometheusServerOptions {
  /** The configuration file's text (YAML); relative paths in it resolve against a temp dir. */
  readonly config: string;
  readonly binary?: string;
  readonly startTimeoutMs?: number;
}

interface ApiEnvelope<T> {
  status: 'success' | 'error';
  data?: T;
  error?: string;
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  const done = exited(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

async function api<T>(url: string): Promise<T> {
  const response = await fetch(url);
  const body = (await response.json()) as ApiEnvelope<T>;
  if (body.status !== 'success' || body.data === undefined) {
    throw new Error(`${url}: ${response.status} ${body.error ?? 'no data'}`);
  }
  return body.data;
}

/**
 * A real Prometheus server on a free loopback port, with its own temporary storage, started
 * with `setpriv --pdeathsig` so that it dies with the test process even on a crash.
 */
export async function startPrometheusServer(
  options: PrometheusServerOptions,
): Promise<PrometheusServer> {
  const dir = await mkdtemp(join(tmpdir(), 'cro-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, options.config);
  const port = await freeLoopbackPort();
  const url = `http://127.0.0.1:${port}`;
  const [command, ...prefixArgs] = [
    ...(await parentDeathPrefix()),
    options.binary ?? '/usr/bin/prometheus',
  ];
  const child = spawn(
    command!,
    [
      ...prefixArgs,
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });

  const stop = async (): Promise<void> => {
    await stopChild(child, 5_000);
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`prometheus exited before it was ready: ${output}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (response) => response.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready within the start timeout: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    url,
    output: () => output,
    async query(expr) {
      const response = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
      const body = (await response.json()) as ApiEnvelope<{
        resultType: string;
        result: VectorSample[] | unknown;
      }>;
      if (body.status !== 'success' || body.data === undefined) {
        return { ok: false, error: `${response.status} ${body.error ?? 'no data'}` };
      }
      const samples = Array.isArray(body.data.result) ? (body.data.result as VectorSample[]) : [];
      return { ok: true, resultType: body.data.resultType, samples };
    },
    async alerts() {
      return (await api<{ alerts: PrometheusAlert[] }>(`${url}/api/v1/alerts`)).alerts;
    },
    async targetHealth() {
      const data = await api<{ activeTargets: { health: string }[] }>(`${url}/api/v1/targets`);
      return data.activeTargets.map((target) => target.health);
    },
    stop,
  };
}
