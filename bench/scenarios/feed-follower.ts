import type { Change } from '../../broker/domain/store-port.js';
import { PostgresStore } from '../../broker/store-postgres/store.js';
import { nowMs } from '../lib/clock.js';
import { encodeHist, newHist, recordMs } from '../lib/hist.js';
import { stampAt } from '../lib/payload.js';
import { serveWorker } from '../lib/proc.js';

/** Another relay node's store: follows the change feed and times each stamped message from its send to its publish here. */
let store: PostgresStore | null = null;
let hist = newHist();
let published = 0;

function onChanges(changes: readonly Change[]): void {
  const now = nowMs();
  for (const c of changes) {
    if (c.kind !== 'message') continue;
    const stamp = stampAt(c.message.body, 0);
    if (!stamp?.measured) continue;
    published++;
    recordMs(hist, now - stamp.ms);
  }
}

serveWorker({
  async open(a: { url: string }) {
    store = await PostgresStore.open({ url: a.url });
    store.feed.follow(onChanges, (why) => console.error(`feed follower: ${why}`));
  },
  reset() {
    hist = newHist();
    published = 0;
  },
  collect() {
    return { published, hist: encodeHist(hist) };
  },
  async close() {
    await store?.close();
  },
});
