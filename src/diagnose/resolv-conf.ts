import type { ResolvConf, ResolverOptions } from '../events/diagnosis.js';
import { canonicalIp, ipFamilyOf } from '../shared/canonical-ip.js';

/** glibc's MAXNS: nameservers past the third are ignored (musl does the same). */
export const MAX_NAMESERVERS = 3;

/** resolv.conf(5) defaults and glibc's caps (RES_MAXNDOTS, RES_MAXRETRANS, RES_MAXRETRY). */
const DEFAULTS: ResolverOptions = {
  ndots: 1,
  timeout: 5,
  attempts: 2,
  singleRequest: false,
  singleRequestReopen: false,
  useVc: false,
  rotate: false,
  edns0: false,
};
const CAPS = { ndots: 15, timeout: 30, attempts: 5 } as const;

type NumericOption = keyof typeof CAPS;
type FlagOption = 'singleRequest' | 'singleRequestReopen' | 'useVc' | 'rotate' | 'edns0';

const FLAGS: Readonly<Record<string, FlagOption>> = {
  'single-request': 'singleRequest',
  'single-request-reopen': 'singleRequestReopen',
  'use-vc': 'useVc',
  rotate: 'rotate',
  edns0: 'edns0',
};

/** Options the resolvers know that change nothing this project advises on. */
const KNOWN_OTHERS = new Set([
  'debug',
  'inet6',
  'ip6-bytestring',
  'ip6-dotint',
  'no-ip6-dotint',
  'no-check-names',
  'no-reload',
  'no-tld-query',
  'trust-ad',
  'no-aaaa',
]);

/**
 * Parses /etc/resolv.conf as glibc's resolver does (resolv/res_init.c): `#` and `;` start
 * comments, a keyword is the first word of a line, `search` and `domain` replace each other
 * (the last one wins), `options` lines add up, numbers are capped, and at most three
 * nameservers of either family count (IPv6 ones in canonical form). Never throws; what the resolver would ignore is listed in `warnings`.
 * The RES_OPTIONS and LOCALDOMAIN environment variables of the process are not applied.
 */
export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let search: string[] = [];
  const options: { -readonly [K in keyof ResolverOptions]: ResolverOptions[K] } = { ...DEFAULTS };
  const warnings: string[] = [];

  for (const [index, rawLine] of text.split('\n').entries()) {
    const line = rawLine.replace(/[#;].*$/, '').trim();
    if (line === '') continue;
    const [keyword, ...values] = line.split(/\s+/);
    const where = `line ${index + 1}`;
    switch (keyword) {
      case 'nameserver': {
        const address = values[0];
        if (address === undefined) {
          warnings.push(`${where}: nameserver without an address`);
        } else if (ipFamilyOf(address) === undefined) {
          // glibc skips what inet_pton reads as neither family (a scope `%eth0` is allowed).
          warnings.push(`${where}: nameserver ${address} ignored (not an IPv4 or IPv6 address)`);
        } else if (nameservers.length >= MAX_NAMESERVERS) {
          warnings.push(
            `${where}: nameserver ${address} ignored (at most ${MAX_NAMESERVERS} are used)`,
          );
        } else {
          nameservers.push(canonicalIp(address));
        }
        break;
      }
      case 'domain':
        search = values.slice(0, 1);
        break;
      case 'search':
        search = values;
        break;
      case 'options':
        for (const option of values) applyOption(option, options, warnings, where);
        break;
      case 'sortlist':
        break;
      default:
        warnings.push(`${where}: unknown keyword ${keyword ?? ''}`);
    }
  }
  if (nameservers.length === 0) {
    warnings.push('no nameserver: the resolver uses 127.0.0.1');
  }
  return { nameservers, search, options, warnings };
}

function applyOption(
  option: string,
  options: { -readonly [K in keyof ResolverOptions]: ResolverOptions[K] },
  warnings: string[],
  where: string,
): void {
  const flag = FLAGS[option];
  if (flag) {
    options[flag] = true;
    return;
  }
  const match = /^(ndots|timeout|attempts):(\d+)$/.exec(option);
  if (match?.[1] && match[2]) {
    const name = match[1] as NumericOption;
    const value = Number.parseInt(match[2], 10);
    if (value > CAPS[name]) warnings.push(`${where}: ${name}:${value} is capped at ${CAPS[name]}`);
    // glibc treats timeout:0 as 1 s.
    const floor = name === 'ndots' ? 0 : 1;
    options[name] = Math.max(floor, Math.min(value, CAPS[name]));
    return;
  }
  const name = option.split(':')[0] ?? option;
  if (!KNOWN_OTHERS.has(name)) warnings.push(`${where}: unknown option ${option}`);
}
