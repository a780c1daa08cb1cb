import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';

/**
 * A self-signed X.509 certificate built with node:crypto alone. Node can make keys and sign but
 * has no certificate builder, so the few DER structures of one certificate are encoded here:
 * that is smaller than a dependency (node-forge, ~1.6 MB) for a certificate Prometheus will not
 * verify anyway (it scrapes with `insecureSkipVerify` when the agent generates its own).
 */
export interface CertificatePair {
  /** PEM "CERTIFICATE". */
  readonly cert: string;
  /** PEM "PRIVATE KEY" (PKCS#8). */
  readonly key: string;
}

export interface SelfSignedOptions {
  readonly commonName: string;
  /** DNS names for the subjectAltName extension. */
  readonly dnsNames?: readonly string[];
  readonly nowMs: number;
  readonly validDays?: number;
  /** Random bytes for the serial number; node:crypto's unless a test needs to choose them. */
  readonly randomBytes?: (size: number) => Buffer;
}

// OIDs, DER-encoded contents: ecdsa-with-SHA256, id-at-commonName, subjectAltName.
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const COMMON_NAME = '2.5.4.3';
const SUBJECT_ALT_NAME = '2.5.29.17';

/** An ECDSA P-256 key and a certificate for it, valid from an hour before `nowMs` (clock skew). */
export function selfSignedCertificate(options: SelfSignedOptions): CertificatePair {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const name = sequence(set(sequence(oid(COMMON_NAME), utf8String(options.commonName))));
  const notBefore = new Date(options.nowMs - 3_600_000);
  const notAfter = new Date(options.nowMs + (options.validDays ?? 365) * 86_400_000);
  const algorithm = sequence(oid(ECDSA_WITH_SHA256));
  const dnsNames = options.dnsNames ?? [];
  const extensions =
    dnsNames.length > 0
      ? [
          explicit(
            3,
            sequence(
              sequence(
                oid(SUBJECT_ALT_NAME),
                octetString(sequence(...dnsNames.map((dns) => tlv(0x82, Buffer.from(dns))))),
              ),
            ),
          ),
        ]
      : [];
  const tbs = sequence(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(serialNumber(options.randomBytes ?? randomBytes)),
    algorithm,
    name,
    sequence(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    ...extensions,
  );
  const signature = sign('sha256', tbs, privateKey);
  const certificate = sequence(tbs, algorithm, bitString(signature));
  return {
    cert: pem('CERTIFICATE', certificate),
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

function serialNumber(random: (size: number) => Buffer): Buffer {
  const bytes = Buffer.from(random(16));
  // DER wants the shortest encoding of a positive INTEGER: a first byte of 0x40-0x7f is
  // neither negative (top bit set) nor padding (0x00), which OpenSSL rejects as illegal.
  bytes.writeUInt8((bytes.readUInt8(0) & 0x3f) | 0x40, 0);
  return bytes;
}

function tlv(tag: number, content: Buffer): Buffer {
  const length = content.length;
  let header: Buffer;
  if (length < 0x80) header = Buffer.from([tag, length]);
  else {
    const bytes: number[] = [];
    for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}

function sequence(...parts: Buffer[]): Buffer {
  return tlv(0x30, Buffer.concat(parts));
}

function set(...parts: Buffer[]): Buffer {
  return tlv(0x31, Buffer.concat(parts));
}

function explicit(tagNumber: number, content: Buffer): Buffer {
  return tlv(0xa0 | tagNumber, content);
}

function integer(bytes: Buffer): Buffer {
  return tlv(0x02, bytes);
}

function bitString(bytes: Buffer): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([0]), bytes]));
}

function octetString(bytes: Buffer): Buffer {
  return tlv(0x04, bytes);
}

function utf8String(text: string): Buffer {
  return tlv(0x0c, Buffer.from(text, 'utf8'));
}

function oid(dotted: string): Buffer {
  const [first, second, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let value = arc >>> 7; value > 0; value >>>= 7) base128.unshift(0x80 | (value & 0x7f));
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}

/** UTCTime until 2049, GeneralizedTime after, as RFC 5280 requires. */
function time(date: Date): Buffer {
  const iso = date.toISOString(); // 2026-12-06T13:33:44.123Z
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // 20261206133344Z
  return date.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(digits.slice(2)))
    : tlv(0x18, Buffer.from(digits));
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
