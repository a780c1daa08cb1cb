import type { PodDiagnosisResult, PodDnsSpec } from '../../events/diagnosis.js';
import { classifyNameserver, type NameserverContext } from '../nameserver-kind.js';
import { singleRequestReopenYaml } from '../remedies.js';
import type { Advice, Remedy, RemedyId } from '../../events/advice.js';

/** The kubelet's ndots for ClusterFirst pods (pkg/kubelet/network/dns). */
const KUBELET_NDOTS = 5;

export interface SpecAdvice {
  readonly remedies: readonly Remedy[];
  readonly notes: readonly string[];
}

/**
 * The advice of a pod adjusted by what its spec says: its dnsPolicy and dnsConfig decide what
 * the kubelet writes into resolv.conf. Where the containers' files were read they are the
 * truth and the spec only explains them; where they were not, the spec is all there is, and
 * a remedy the spec already applies is not given again.
 */
export function adviseFromSpec(
  spec: PodDnsSpec,
  diagnosis: PodDiagnosisResult,
  advice: Advice,
  context: NameserverContext,
): SpecAdvice {
  const notes: string[] = [];
  const drop = new Set<RemedyId>();
  const read = diagnosis.status === 'diagnosed';
  const policy = spec.dnsPolicy ?? 'ClusterFirst';
  const options = spec.dnsConfig?.options ?? [];
  const optionNames = new Set(options.map((o) => o.name));
  const ndots = options.find((o) => o.name === 'ndots')?.value;

  if (spec.hostNetwork && policy === 'ClusterFirst') {
    notes.push(
      "hostNetwork with dnsPolicy ClusterFirst falls back to the node's resolv.conf (Default); ClusterFirstWithHostNet reaches cluster DNS.",
    );
  } else if (policy === 'Default') {
    notes.push("dnsPolicy Default: the node's resolv.conf, not cluster DNS.");
  } else if (policy === 'None') {
    if (ndots === undefined) {
      notes.push(
        'dnsPolicy None without an ndots option: the resolver default ndots:1 applies, so names with a dot are not tried against the search list first.',
      );
      if (!read) drop.add('fewer-search-lookups');
    } else notes.push(`dnsPolicy None with ndots:${ndots} from dnsConfig.`);
  } else if (ndots === undefined) {
    notes.push(
      `dnsPolicy ${policy} without an ndots option: the kubelet writes ndots:${KUBELET_NDOTS}, so a name with fewer dots tries every search domain first.`,
    );
  } else {
    notes.push(`dnsConfig sets ndots:${ndots} over the kubelet's ${KUBELET_NDOTS}.`);
    if (!read && Number(ndots) < 2) drop.add('fewer-search-lookups');
  }

  pinnedOptionsAdvice(optionNames, diagnosis, notes, drop);

  const specServers = (spec.dnsConfig?.nameservers ?? []).map((address) =>
    classifyNameserver(address, context),
  );
  const nodeLocal = specServers.find((server) => server.kind === 'nodelocal');
  if (nodeLocal) {
    notes.push(
      policy === 'None'
        ? `dnsConfig points the pod at NodeLocal DNSCache (${nodeLocal.address}).`
        : `dnsConfig names NodeLocal DNSCache (${nodeLocal.address}), after the nameserver dnsPolicy ${policy} puts first.`,
    );
    if (!read && policy === 'None') {
      drop.add('nodelocal-dns');
      drop.add('nodelocal-dns-use');
    }
  }

  const remedies = advice.remedies
    .filter((remedy) => !drop.has(remedy.id))
    // Unread, the generic fragment would replace the options the spec already has.
    .map((remedy) =>
      remedy.id === 'single-request-reopen' && !read
        ? { ...remedy, yaml: singleRequestReopenYaml(spec) }
        : remedy,
    );
  return { remedies, notes };
}

/**
 * The options that stop A and AAAA racing on one socket, when the spec sets them: unread, they
 * are taken as applied; read, a container whose resolv.conf lacks them is named.
 */
function pinnedOptionsAdvice(
  optionNames: ReadonlySet<string>,
  diagnosis: PodDiagnosisResult,
  notes: string[],
  drop: Set<RemedyId>,
): void {
  const pinned = ['single-request-reopen', 'single-request', 'use-vc'].filter((name) =>
    optionNames.has(name),
  );
  if (pinned.length > 0) {
    if (diagnosis.status !== 'diagnosed') {
      notes.push(
        `dnsConfig already sets ${pinned.join(', ')}: glibc containers no longer race A and AAAA on one socket (musl ignores it; their libc was not read).`,
      );
      drop.add('single-request-reopen');
    } else {
      for (const container of diagnosis.containers) {
        const conf = container.resolvConf;
        if (!conf) continue;
        const missing = pinned.filter(
          (name) =>
            !(
              (name === 'single-request-reopen' && conf.options.singleRequestReopen) ||
              (name === 'single-request' && conf.options.singleRequest) ||
              (name === 'use-vc' && conf.options.useVc)
            ),
        );
        if (missing.length > 0) {
          notes.push(
            `dnsConfig sets ${missing.join(', ')} but ${container.name}'s /etc/resolv.conf lacks it: the image or a volume replaces the file the kubelet writes.`,
          );
        }
      }
    }
  }
}
