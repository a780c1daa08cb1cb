import type { KernelFacts } from '../events/diagnosis.js';
import { kernelAtLeast, parseKernelRelease } from '../detect/kernel-release.js';

/**
 * What a kernel release means for these races. Versions are those of mainline; distribution
 * kernels backport, so an older release may behave like a newer one (never the reverse).
 * - 4.19: ed07d9a021df "netfilter: nf_conntrack: resolve clash for matching conntracks"
 *   (two packets of one flow with identical NAT: the second reuses the first's entry).
 * - 5.6: IPS_NAT_CLASH, "netfilter: conntrack: allow insertion of clashing entries"
 *   (UDP packets of one flow given different DNAT targets both pass).
 * - 5.10: the `clash_resolve` statistics counter; before it insert_failed also counted clashes
 *   that were resolved.
 * - 5.17: drop reasons on skb:kfree_skb.
 */
export function kernelFactsOf(release: string): KernelFacts | undefined {
  const version = parseKernelRelease(release);
  if (!version) return undefined;
  return {
    release: release.trim(),
    resolvesMatchingClashes: kernelAtLeast(version, 4, 19),
    resolvesNatClashes: kernelAtLeast(version, 5, 6),
    hasClashResolveCounter: kernelAtLeast(version, 5, 10),
    hasDropReasons: kernelAtLeast(version, 5, 17),
  };
}
