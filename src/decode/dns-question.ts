import { createRequire } from 'node:module';
import type { decode as DecodeDnsMessage } from 'dns-packet';

/*
 * dns-packet is loaded on the first NODATA answer, not with the agent: importing it costs about
 * 11 MB of resident memory (measured: a bare Node process 39.4 MB, 50.3 MB after the import),
 * and only agents with DNS query tracking on ever read a DNS message.
 */
const requireModule = createRequire(import.meta.url);
type DecodeMessage = (message: Buffer) => ReturnType<typeof DecodeDnsMessage>;
let decodeDnsMessageOnce: DecodeMessage | undefined;
const decodeDnsMessage: DecodeMessage = (message) => {
  decodeDnsMessageOnce ??= (requireModule('dns-packet') as { decode: typeof DecodeDnsMessage })
    .decode;
  return decodeDnsMessageOnce(message);
};

/** The question of a DNS message: what the client asked. */
export interface DnsQuestion {
  /** Without a trailing dot, lower-cased (DNS names compare case-insensitively). */
  readonly name: string;
  /** e.g. "A", "AAAA"; the number for a type dns-packet does not name. */
  readonly type: string;
}

const HEADER_BYTES = 12;
/** Bytes the probe prints of a message (probes/tracepoint/dns-queries.bt). */
export const DNS_MESSAGE_PREFIX_BYTES = 128;

/**
 * The question of a DNS message of which only the first bytes are known (the probe prints 128),
 * or undefined when they hold no whole, well-formed question. dns-packet reads the name
 * (labels, compression pointers, limits) as a resolver would; the header's counts are set to
 * one question and no records first, so that the missing rest of the message does not matter.
 */
export function dnsQuestionOf(prefix: Uint8Array): DnsQuestion | undefined {
  if (prefix.length <= HEADER_BYTES) return undefined;
  const message = Buffer.from(prefix);
  message.writeUInt16BE(1, 4);
  message.writeUInt32BE(0, 6);
  message.writeUInt16BE(0, 10);
  try {
    const question = decodeDnsMessage(message).questions?.[0];
    if (question === undefined || typeof question.name !== 'string') return undefined;
    return { name: question.name.toLowerCase(), type: String(question.type) };
  } catch {
    // dns-packet throws on a name that runs past the bytes, a bad pointer, a bad label.
    return undefined;
  }
}

/** `\x07\x65…` as bpftrace 0.17 prints a buf() with %rx, or undefined when it is not that. */
export function bytesOfEscapedHex(text: string): Uint8Array | undefined {
  if (text.length === 0 || text.length % 4 !== 0 || text.length > DNS_MESSAGE_PREFIX_BYTES * 4) {
    return undefined;
  }
  const bytes = new Uint8Array(text.length / 4);
  for (let i = 0; i < bytes.length; i += 1) {
    const chunk = text.slice(i * 4, i * 4 + 4);
    if (!/^\\x[0-9a-fA-F]{2}$/.test(chunk)) return undefined;
    bytes[i] = parseInt(chunk.slice(2), 16);
  }
  return bytes;
}
