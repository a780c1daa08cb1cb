import { UnansweredCauses } from '../../src/events/unanswered-cause.js';
import { dnsDrop, dnsQuery, insertFailure } from '../support/events.js';

const causes = (): UnansweredCauses => new UnansweredCauses({ windowMs: 13_000, maxClients: 2 });
const unanswered = (srcIp = '10.244.0.3') =>
  dnsQuery({
    outcome: 'unanswered',
    answer: undefined,
    tuple: { srcIp, srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
  });

describe('UnansweredCauses', () => {
  it('names the cause of unanswered queries from the last drop of the same client within the window', () => {
    const tracker = causes();
    tracker.link(dnsDrop({ count: 4 }), 1_000);
    expect(tracker.link(unanswered(), 9_000)).toMatchObject({ cause: 'firewall' });
    expect(tracker.link(unanswered(), 15_000)).toMatchObject({ cause: 'none' });
    expect(tracker.link(unanswered('10.244.0.9'), 9_000)).toMatchObject({ cause: 'none' });
  });

  it('tells a race, a missing listener and other reasons apart, a race first within one window', () => {
    const tracker = causes();
    tracker.link(dnsDrop({ reason: 'NO_SOCKET', count: 1 }), 0);
    expect(tracker.causeOf('10.244.0.3', 1)).toBe('no_socket');
    tracker.link(
      insertFailure({
        protocol: 'udp',
        original: { srcIp: '10.244.0.3', srcPort: 40000, dstIp: '10.96.0.10', dstPort: 53 },
      }),
      10,
    );
    tracker.link(dnsDrop({ count: 1 }), 20);
    expect(tracker.causeOf('10.244.0.3', 30)).toBe('race');
    tracker.link(dnsDrop({ reason: 'OTHERHOST', count: 1 }), 20_000);
    expect(tracker.causeOf('10.244.0.3', 20_001)).toBe('other_drop');
  });

  it('takes no cause from examples, late answers freed unread, or answered queries', () => {
    const tracker = causes();
    tracker.link(dnsDrop({ count: 0 }), 0);
    tracker.link(dnsDrop({ reason: 'NOT_SPECIFIED', direction: 'response', count: 2 }), 0);
    expect(tracker.causeOf('10.244.0.3', 1)).toBe('none');
    expect(tracker.link(dnsQuery(), 1)).not.toHaveProperty('cause');
  });

  it('remembers at most its bound of clients, the least recently dropped leaving first', () => {
    const tracker = causes();
    for (const [index, ip] of ['10.0.0.1', '10.0.0.2', '10.0.0.3'].entries()) {
      tracker.link(
        dnsDrop({ count: 1, tuple: { srcIp: ip, srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 } }),
        index,
      );
    }
    expect(tracker.causeOf('10.0.0.1', 5)).toBe('none');
    expect(tracker.causeOf('10.0.0.3', 5)).toBe('firewall');
  });
});
