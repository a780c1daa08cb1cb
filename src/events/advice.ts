/**
 * The advice for one event: which remedies apply and what the diagnosis says of the case.
 * Plain data, written once per event by the pipeline's advice stage (src/diagnose/remedies.ts)
 * and carried by the event; the sinks only render it.
 */

export type RemedyId =
  | 'random-fully'
  | 'single-request-reopen'
  | 'nodelocal-dns'
  | 'nodelocal-dns-use'
  | 'nodelocal-upstream-tcp'
  | 'fewer-search-lookups'
  | 'kernel-matching-clash'
  | 'kernel-nat-clash'
  | 'tcp-resolver';

export interface Remedy {
  readonly id: RemedyId;
  /** One sentence for the Event. */
  readonly text: string;
  /** A pod spec fragment to paste, when the remedy is a change of the pod. */
  readonly yaml?: string;
  readonly source: string;
}

export interface Advice {
  readonly remedies: readonly Remedy[];
  /** What the diagnosis says about this case besides the remedies (e.g. "already set"). */
  readonly notes: readonly string[];
  /** One line summarising the diagnosis for the Event, e.g. "musl, nameserver 10.96.0.10 (kube-dns), ndots:5". */
  readonly summary: string;
  /** False when the pod could not be read: the remedies are the generic ones. */
  readonly diagnosed: boolean;
}
