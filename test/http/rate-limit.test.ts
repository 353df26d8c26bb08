import t from 'tap';
import { startRelay } from '../helpers/relay.js';

t.test('HTTP over the per-address rate gets 429 with Retry-After; nothing it asked for is done', async (t) => {
  const relay = await startRelay(t, { httpRateLimitPerSec: 1, httpRateBurst: 3 });
  const statuses: number[] = [];
  let refused: Response | null = null;
  for (let i = 0; i < 5; i++) {
    const r = await fetch(`${relay.url}/api/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ to: 'broadcast', body: `m${i}`, from: 'ext:script' }),
    });
    statuses.push(r.status);
    if (r.status === 429) refused ??= r;
    else await r.arrayBuffer();
  }
  t.same(statuses.slice(0, 3), [201, 201, 201], 'the burst is admitted');
  t.ok(
    statuses.slice(3).every((s) => s === 429),
    `then refused: ${statuses.join(',')}`,
  );
  t.ok(refused, 'a refusal was seen');
  t.ok(Number(refused!.headers.get('retry-after')) >= 1, 'Retry-After says when to come back');
  const body = (await refused!.json()) as { error: { code: number; message: string } };
  t.equal(body.error.code, -32005);
  t.match(body.error.message, /rate limited/);
  // Only the admitted sends exist.
  const list = await relay.core.store.messages.maxId();
  t.equal(list, 3, 'refused requests wrote nothing');
});
