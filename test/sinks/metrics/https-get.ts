import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { PeerCertificate, TLSSocket } from 'node:tls';

export interface Answer {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly peerCertificate?: PeerCertificate;
}

/**
 * GET over HTTPS without verifying the server's certificate (it is self-signed); global fetch
 * cannot switch verification off without undici's own Agent.
 */
export function httpsGet(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      url,
      { headers, rejectUnauthorized: false, agent: false },
      (response) => {
        const peerCertificate = (response.socket as TLSSocket).getPeerCertificate();
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body,
            headers: response.headers,
            peerCertificate,
          }),
        );
      },
    );
    request.on('error', reject);
    request.end();
  });
}

/** GET in plain HTTP. */
export function httpGet(url: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, body, headers: response.headers }),
      );
    });
    request.setTimeout(5_000, () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end();
  });
}
