import { canonicalIp } from '../shared/canonical-ip.js';
import { clientIpOf } from '../events/client-ip.js';
import type { Attribution, AttributionResolver, ProbeEvent } from '../events/types.js';

/** Without Kubernetes an event is blamed on its client IP and network namespace. */
export const standaloneResolver: AttributionResolver = {
  attribute(event: ProbeEvent): Attribution {
    return { sourceIp: canonicalIp(clientIpOf(event)), netnsInode: event.netnsInode };
  },
};
