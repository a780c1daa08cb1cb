/*
 * fast-check arbitraries for what a probe could print: good records, records with one field
 * made hostile, records of the wrong shape, truncated lines, and bytes that are no text at all.
 */
import fc from 'fast-check';

const octet = fc.integer({ min: 0, max: 255 });
export const ipv4 = fc.tuple(octet, octet, octet, octet).map((parts) => parts.join('.'));
const port = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const nsecs = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String);
const cpu = fc.integer({ min: 0, max: 0xffff });
const hexStatus = fc
  .integer({ min: 0, max: 0xffffffff })
  .chain((value) => fc.constantFrom(value.toString(16), `0x${value.toString(16)}`));
const symbol = fc.stringMatching(/^[a-z_]{1,24}$/);
const tupleFields = fc.tuple(ipv4, port, ipv4, port).map((fields) => fields.map(String));
/** IPv6 text in any valid spelling: full, compressed, upper case, with an embedded IPv4. */
export const ipv6 = fc.oneof(
  fc.ipV6(),
  fc.ipV6().map((text) => text.toUpperCase()),
  fc
    .array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 })
    .map((groups) => groups.map((group) => group.toString(16).padStart(4, '0')).join(':')),
);
const tupleFields6 = fc.tuple(ipv6, port, ipv6, port).map((fields) => fields.map(String));

/** The fields of a valid event payload, record name first. */
export const validEventFields: fc.Arbitrary<string[]> = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('insert_failed', 'clash_resolved'),
      nsecs,
      cpu,
      u32,
      hexStatus,
      fc.integer({ min: 0, max: 255 }),
      tupleFields,
      tupleFields,
      symbol,
    )
    .map(([record, ns, c, netns, status, proto, original, reply, location]) => [
      record,
      '1',
      ns,
      String(c),
      String(netns),
      status,
      String(proto),
      ...original,
      ...reply,
      location,
    ]),
  fc
    .tuple(
      fc.constantFrom(['insert_failed', '3'], ['clash_resolved', '2']),
      nsecs,
      cpu,
      u32,
      hexStatus,
      fc.integer({ min: 0, max: 255 }),
      fc.oneof(
        fc.tuple(fc.constant('ipv4'), tupleFields, tupleFields),
        fc.tuple(fc.constant('ipv6'), tupleFields6, tupleFields6),
      ),
      symbol,
    )
    .map(
      ([[record, version], ns, c, netns, status, proto, [family, original, reply], location]) => [
        record,
        version,
        ns,
        String(c),
        String(netns),
        status,
        String(proto),
        family,
        ...original,
        ...reply,
        location,
      ],
    ),
  fc
    .tuple(
      nsecs,
      cpu,
      u32,
      fc.maxSafeNat(),
      u32,
      fc.integer({ min: 0, max: 255 }),
      tupleFields6,
      ipv6,
      port,
    )
    .map(([ns, c, netns, latency, attempts, proto, original, ip, translatedPort]) => [
      'snat_port_alloc',
      '2',
      ns,
      String(c),
      String(netns),
      String(latency),
      String(attempts),
      String(proto),
      'ipv6',
      ...original,
      ip,
      String(translatedPort),
    ]),
  fc
    .tuple(nsecs, cpu, u32, u32, tupleFields, symbol)
    .map(([ns, c, netns, reason, packet, location]) => [
      'dns_drop',
      '1',
      ns,
      String(c),
      String(netns),
      String(reason),
      ...packet,
      location,
    ]),
  fc
    .tuple(
      nsecs,
      cpu,
      u32,
      fc.oneof(u32.map(String), fc.constant('-')),
      fc.oneof(
        fc.tuple(fc.constant('ipv4'), tupleFields, tupleFields),
        fc.tuple(fc.constant('ipv6'), tupleFields6, tupleFields6),
      ),
      symbol,
      hexStatus,
    )
    .map(([ns, c, netns, reason, [family, packet, original], location, status]) => [
      'dns_drop',
      '4',
      ns,
      String(c),
      String(netns),
      reason,
      family,
      ...packet,
      location,
      status,
      ...original,
    ]),
  fc
    .tuple(nsecs, cpu, u32, u32, tupleFields, symbol, hexStatus, tupleFields)
    .map(([ns, c, netns, reason, packet, location, status, original]) => [
      'dns_drop',
      '2',
      ns,
      String(c),
      String(netns),
      String(reason),
      ...packet,
      location,
      status,
      ...original,
    ]),
  fc
    .tuple(
      nsecs,
      cpu,
      u32,
      fc.maxSafeNat(),
      u32,
      fc.integer({ min: 0, max: 255 }),
      tupleFields,
      ipv4,
      port,
    )
    .map(([ns, c, netns, latency, attempts, proto, original, ip, translatedPort]) => [
      'snat_port_alloc',
      '1',
      ns,
      String(c),
      String(netns),
      String(latency),
      String(attempts),
      String(proto),
      ...original,
      ip,
      String(translatedPort),
    ]),
);

/** Values no field accepts in every slot: out of range, negative, not integers, not text. */
export const hostileToken: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '-1',
    '-0',
    '',
    'NaN',
    'Infinity',
    '-Infinity',
    '1e999',
    '0x10',
    '+5',
    '12.5',
    '18446744073709551616',
    '9'.repeat(40),
    '9'.repeat(400),
    '\u0000',
    '\ufffd',
    '256.1.1.1',
    '1::2::3',
    'fd00::10000',
    '::ffff:1.2.3.256',
    '1:2:3:4:5:6:7:8:9',
    'ipv5',
    '65536',
    '4294967296',
  ),
  fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }).map(String),
  fc.double().map(String),
  fc.string({ unit: 'binary', maxLength: 12 }),
);

/** A printf record as bpftrace prints it (the decoder's fast path) or with JSON escapes. */
export function printfLine(payload: string, escaped: boolean): string {
  return escaped
    ? JSON.stringify({ type: 'printf', data: `${payload}\n` })
    : `{"type": "printf", "data": "${payload}\\n"}`;
}

const printfStyle = fc.boolean();

export const validEventLine: fc.Arbitrary<string> = fc
  .tuple(validEventFields, printfStyle)
  .map(([fields, escaped]) => printfLine(fields.join(' '), escaped));

/** A valid payload with some fields replaced by hostile values, dropped or added. */
export const mutatedEventLine: fc.Arbitrary<string> = fc
  .tuple(
    validEventFields,
    fc.array(fc.tuple(fc.nat(), hostileToken), { minLength: 1, maxLength: 3 }),
    fc.constantFrom('replace', 'drop', 'add'),
    printfStyle,
  )
  .map(([fields, mutations, how, escaped]) => {
    const mutated = [...fields];
    for (const [at, token] of mutations) {
      const index = at % mutated.length;
      if (how === 'replace') mutated[index] = token;
      else if (how === 'drop') mutated.splice(index, 1);
      else mutated.splice(index, 0, token);
    }
    return printfLine(mutated.join(' '), escaped);
  });

/** Numbers as JSON text could hold them, many of them no count. */
export const countText: fc.Arbitrary<string> = fc.oneof(
  fc.nat().map(String),
  fc.constantFrom(
    '-5',
    '-0',
    '1.5',
    '1e300',
    '1e999',
    '-1e999',
    '9007199254740992',
    '9007199254740991',
    '"12"',
    'null',
    'true',
    '[]',
    '{}',
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
  fc.integer().map(String),
);

/** Control records with any count and records whose type or data has the wrong shape. */
export const controlRecordLine: fc.Arbitrary<string> = fc.oneof(
  countText.map((count) => `{"type": "lost_events", "data": {"events": ${count}}}`),
  countText.map((count) => `{"type": "attached_probes", "data": {"probes": ${count}}}`),
  fc
    .record({
      type: fc.oneof(
        fc.constantFrom('printf', 'lost_events', 'attached_probes', 'map', 'time'),
        fc.jsonValue(),
      ),
      data: fc.jsonValue(),
    })
    .map((record) => JSON.stringify(record)),
  fc.jsonValue().map((value) => JSON.stringify(value) ?? 'undefined'),
);

/** A good line cut short anywhere. */
export const truncatedLine: fc.Arbitrary<string> = fc
  .tuple(fc.oneof(validEventLine, controlRecordLine), fc.nat())
  .map(([line, at]) => line.slice(0, at % Math.max(1, line.length)));

const loneSurrogate = fc
  .integer({ min: 0xd800, max: 0xdfff })
  .map((code) => String.fromCharCode(code));

/** Bytes as the reader would turn them into text, code points of any plane, lone surrogates. */
export const garbageLine: fc.Arbitrary<string> = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('utf8')),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: fc.oneof(loneSurrogate, fc.string({ unit: 'binary', maxLength: 1 })) }),
);

/** Anything a probe could print on one line. */
export const hostileLine: fc.Arbitrary<string> = fc.oneof(
  validEventLine,
  mutatedEventLine,
  controlRecordLine,
  truncatedLine,
  garbageLine,
);
