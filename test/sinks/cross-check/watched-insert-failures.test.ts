import { WatchedInsertFailures } from '../../../src/sinks/cross-check/watched-insert-failures.js';
import { attributed, dnsDrop, insertFailure } from '../../support/events.js';

describe('watched insert failures', () => {
  function sink() {
    const observed: number[] = [];
    const watched = new WatchedInsertFailures({
      watchedNetnsInode: 4026531840,
      crossCheck: { recordObserved: (count = 1) => observed.push(count) },
    });
    return { watched, observed };
  }

  it('feeds the cross-check the insert failures of the watched namespace, counts included', () => {
    const { watched, observed } = sink();
    watched.handle(attributed(insertFailure({ netnsInode: 4026531840 })));
    watched.handle(attributed(insertFailure({ netnsInode: 4026531840, count: 7 })));
    expect(observed).toEqual([1, 7]);
  });

  it('leaves out other namespaces and other kinds of event', () => {
    const { watched, observed } = sink();
    watched.handle(attributed(insertFailure({ netnsInode: 4026532000 })));
    watched.handle(attributed(dnsDrop({ netnsInode: 4026531840 })));
    expect(observed).toEqual([]);
  });
});
