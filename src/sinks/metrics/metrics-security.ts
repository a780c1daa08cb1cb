import { createSecureContext } from 'node:tls';
import { MetricsAuthorizer, type AuthDecision, type ReviewApi } from './metrics-auth.js';
import { selfSignedCertificate } from './self-signed-certificate.js';

export interface MetricsSecurityInput {
  /** PEM files; both or neither. Neither: a self-signed certificate made at start. */
  readonly tlsCertFile?: string;
  readonly tlsPrivateKeyFile?: string;
  readonly readText: (path: string) => Promise<string>;
  readonly reviewApi: ReviewApi;
  readonly nowMs: () => number;
  /** Names in the self-signed certificate (the node name, so an operator sees whose it is). */
  readonly dnsNames?: readonly string[];
}

export interface MetricsSecurity {
  readonly tls: { readonly cert: string; readonly key: string };
  readonly authorize: (authorization: string | undefined) => Promise<AuthDecision>;
  /** Whether the certificate was generated (clients cannot verify it). */
  readonly selfSigned: boolean;
}

/** The certificate or key cannot be read or used; the message names the file. */
export class MetricsTlsError extends Error {
  override readonly name = 'MetricsTlsError';
  readonly code = 'ERR_METRICS_TLS';
}

/** What `--metrics-auth kubernetes` serves with: TLS, and a token check before /metrics. */
export async function metricsSecurity(input: MetricsSecurityInput): Promise<MetricsSecurity> {
  const tls = await certificate(input);
  const authorizer = new MetricsAuthorizer({ api: input.reviewApi, nowMs: input.nowMs });
  return {
    tls,
    authorize: (authorization) => authorizer.authorize(authorization),
    selfSigned: input.tlsCertFile === undefined,
  };
}

async function certificate(
  input: MetricsSecurityInput,
): Promise<{ readonly cert: string; readonly key: string }> {
  const { tlsCertFile, tlsPrivateKeyFile } = input;
  if (tlsCertFile === undefined || tlsPrivateKeyFile === undefined) {
    if (tlsCertFile !== tlsPrivateKeyFile) {
      throw new MetricsTlsError('--tls-cert-file and --tls-private-key-file go together');
    }
    return selfSignedCertificate({
      commonName: 'conntrack-race-observer',
      dnsNames: input.dnsNames,
      nowMs: input.nowMs(),
    });
  }
  const cert = await readPem(input, tlsCertFile, 'certificate');
  const key = await readPem(input, tlsPrivateKeyFile, 'private key');
  try {
    // What the server would throw at its first connection, thrown now, while start can fail.
    createSecureContext({ cert, key });
  } catch (error) {
    throw new MetricsTlsError(
      `TLS certificate ${tlsCertFile} and key ${tlsPrivateKeyFile} are not a usable pair: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { cert, key };
}

async function readPem(input: MetricsSecurityInput, path: string, what: string): Promise<string> {
  try {
    return await input.readText(path);
  } catch (error) {
    throw new MetricsTlsError(`cannot read TLS ${what} ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
