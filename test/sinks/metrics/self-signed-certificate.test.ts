import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { selfSignedCertificate } from '../../../src/sinks/metrics/self-signed-certificate.js';

describe('self-signed certificate', () => {
  it('is a v3 certificate signed by its own key, valid for a year from an hour ago', () => {
    const nowMs = Date.parse('2026-12-06T12:00:00Z');
    const pair = selfSignedCertificate({
      commonName: 'conntrack-race-observer',
      dnsNames: ['node-a'],
      nowMs,
    });
    const cert = new X509Certificate(pair.cert);
    expect(cert.subject).toBe('CN=conntrack-race-observer');
    expect(cert.issuer).toBe(cert.subject);
    expect(cert.subjectAltName).toBe('DNS:node-a');
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.checkPrivateKey(createPrivateKey(pair.key))).toBe(true);
    expect(Date.parse(cert.validFrom)).toBe(nowMs - 3_600_000);
    expect(Date.parse(cert.validTo)).toBe(nowMs + 365 * 86_400_000);
  });

  it('uses a fresh key and serial each time', () => {
    const a = new X509Certificate(selfSignedCertificate({ commonName: 'x', nowMs: 0 }).cert);
    const b = new X509Certificate(selfSignedCertificate({ commonName: 'x', nowMs: 0 }).cert);
    expect(a.serialNumber).not.toBe(b.serialNumber);
    expect(a.fingerprint256).not.toBe(b.fingerprint256);
  });

  it.each([
    ['zero', 0x00],
    ['a clear top bit', 0x7f],
    ['a set top bit', 0xff],
  ])('encodes a serial whose random bytes are all %s as a positive minimal INTEGER', (_, byte) => {
    const pair = selfSignedCertificate({
      commonName: 'x',
      nowMs: Date.now(),
      randomBytes: (size) => Buffer.alloc(size, byte),
    });
    // OpenSSL rejects a leading 0x00 that is not needed as "illegal padding".
    expect(() => createSecureContext(pair)).not.toThrow();
    expect(new X509Certificate(pair.cert).serialNumber).toMatch(/^[4-7][0-9A-F]{31}$/);
  });

  it('encodes dates past 2049 as GeneralizedTime', () => {
    const nowMs = Date.parse('2060-01-01T00:00:00Z');
    const cert = new X509Certificate(selfSignedCertificate({ commonName: 'x', nowMs }).cert);
    expect(Date.parse(cert.validTo)).toBe(nowMs + 365 * 86_400_000);
  });
});
