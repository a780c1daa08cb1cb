import type { EventDiagnosis, LibcKind, ResolvConf } from './diagnosis.js';
import type { DnsNoDataEvent } from './types.js';

/** The search domain a NODATA answer came from, and the name the pod had asked for. */
export interface SearchListAnswer {
  /** The search-list domain appended to the pod's name. */
  readonly domain: string;
  /** The name the pod looked up (the answered name without the domain). */
  readonly requested: string;
}

/**
 * The search-list entry a question name was built from: `<requested>.<domain>` with `<domain>`
 * in the search list and fewer dots in `<requested>` than ndots (with as many or more, neither
 * musl nor glibc tries the search list before the name itself). When several domains fit
 * (`svc.cluster.local` and `cluster.local`), the longest: the shortest name the pod could have
 * asked for.
 */
export function searchListAnswerOf(
  name: string,
  resolvConf: {
    readonly search: ResolvConf['search'];
    readonly options: Pick<ResolvConf['options'], 'ndots'>;
  },
): SearchListAnswer | undefined {
  const question = stripDot(name.toLowerCase());
  let best: SearchListAnswer | undefined;
  for (const entry of resolvConf.search) {
    const domain = stripDot(entry.toLowerCase());
    if (domain.length === 0 || !question.endsWith(`.${domain}`)) continue;
    const requested = question.slice(0, question.length - domain.length - 1);
    if (requested.length === 0 || dotsIn(requested) >= resolvConf.options.ndots) continue;
    if (best === undefined || domain.length > best.domain.length) best = { domain, requested };
  }
  return best;
}

/**
 * What a NODATA answer to a search-list name did to the pod's lookup. musl (1.2.3,
 * `name_from_dns_search`) ends the whole lookup there when its queries came back NOERROR
 * without records, and fails it ("Name does not resolve"), so the later search domains and
 * the name itself are never tried; glibc treats it like NXDOMAIN and goes on.
 */
export interface NoDataStop extends SearchListAnswer {
  /** The answered name. */
  readonly name: string;
  readonly libc: LibcKind;
  /** The container whose resolver settings and C library the verdict was read from. */
  readonly container: string;
  /**
   * The names the lookup tried, in order, the answered one last: the requested name with each
   * search domain up to this one, as its resolv.conf makes musl try them (a name with fewer dots
   * than ndots goes through the search list before it is tried as is).
   */
  readonly tried: readonly string[];
}

/**
 * Whether a NODATA answer ended a musl lookup: an A question (an AAAA NODATA alone is what
 * every IPv4-only name gets, and musl takes the A answer beside it) whose name is a
 * search-list name of a musl container of the pod. Undefined for anything else, including a
 * pod not yet diagnosed and a glibc one, which goes on searching.
 */
export function noDataStopOf(
  event: DnsNoDataEvent,
  diagnosis: EventDiagnosis | undefined,
): NoDataStop | undefined {
  if (event.qtype !== 'A') return undefined;
  const pod = diagnosis?.pod;
  if (pod?.status !== 'diagnosed') return undefined;
  for (const container of pod.containers) {
    if (container.libc.kind !== 'musl' || container.resolvConf === undefined) continue;
    const answer = searchListAnswerOf(event.name, container.resolvConf);
    if (answer !== undefined) {
      return {
        ...answer,
        name: event.name,
        libc: 'musl',
        container: container.name,
        tried: namesTried(answer, container.resolvConf.search),
      };
    }
  }
  return undefined;
}

/** The search-list names before and including the answered one, in the list's order. */
function namesTried(answer: SearchListAnswer, search: readonly string[]): string[] {
  const tried: string[] = [];
  for (const entry of search) {
    const domain = stripDot(entry.toLowerCase());
    if (domain.length === 0) continue;
    tried.push(`${answer.requested}.${domain}`);
    if (domain === answer.domain) break;
  }
  return tried;
}

function stripDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

function dotsIn(text: string): number {
  let dots = 0;
  for (const char of text) if (char === '.') dots += 1;
  return dots;
}
