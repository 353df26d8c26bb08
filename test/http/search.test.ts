import t from 'tap';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';

/** GET /api/messages/search over real HTTP: the query string maps onto message/search, the same answers and errors. */

async function get(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, { headers, signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.json() };
}

const ids = (body: { hits: Array<{ message: { id: number } }> }) => body.hits.map((h) => h.message.id);

t.test('GET /api/messages/search: query string, filters, paging, agent identity, errors', async (t) => {
  const relay = await startRelay(t);
  const obs = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const toCarol = (await alice.rpc.call('message/send', { to: 'carol', body: 'rollout of build 42 to carol', channel: 'ops' })).message.id;
  const toBob = (await alice.rpc.call('message/send', { to: 'bob', subject: 'rollout', body: 'build 42 for bob' })).message.id;
  const fromCi = (await obs.call('message/send', { to: 'bob', from: 'ext:ci', body: 'rollout paused' })).message.id;

  const all = await get(relay.url, '/api/messages/search?q=rollout');
  t.equal(all.status, 200);
  t.same(ids(all.body), ids(await obs.call('message/search', { query: 'rollout' })), 'the same answer as the method');
  t.equal(ids(all.body)[0], toBob, 'the subject match first');
  t.match(all.body.hits[0].snippet, '«rollout»');
  t.same(ids((await get(relay.url, '/api/messages/search?q=rollout&channel=ops')).body), [toCarol], 'channel=');
  t.same(ids((await get(relay.url, '/api/messages/search?q=rollout&from=ext%3Aci')).body), [fromCi], 'from=');
  t.same(ids((await get(relay.url, '/api/messages/search?q=rollout&to=carol')).body), [toCarol], 'to=');
  t.same(ids((await get(relay.url, `/api/messages/search?q=rollout&since=${toBob}`)).body), [fromCi], 'since=');
  t.same(ids((await get(relay.url, '/api/messages/search?q=%22build%2042%22')).body).sort(), [toCarol, toBob].sort(), 'a quoted phrase, URL-encoded');

  const first = await get(relay.url, '/api/messages/search?q=rollout&limit=2');
  t.same([first.body.hits.length, first.body.more], [2, true]);
  const second = await get(relay.url, `/api/messages/search?q=rollout&limit=2&after=${encodeURIComponent(first.body.nextCursor)}`);
  t.same([...ids(first.body), ...ids(second.body)], ids(all.body), 'after= pages on');
  t.equal(second.body.more, undefined, 'the last page');

  const asBob = await get(relay.url, '/api/messages/search?q=rollout', { 'x-agent-id': 'bob', 'x-agent-token': bob.token });
  t.same(ids(asBob.body).sort(), [toBob, fromCi].sort(), "with bob's headers: bob's inbox, not carol's message");
  const wrong = await get(relay.url, '/api/messages/search?q=rollout', { 'x-agent-id': 'bob', 'x-agent-token': alice.token });
  t.equal(wrong.status, 401, "alice's token for bob: 401");

  for (const path of ['/api/messages/search', '/api/messages/search?q=', '/api/messages/search?q=%21%21', '/api/messages/search?q=x&limit=500']) {
    const res = await get(relay.url, path);
    t.same([res.status, res.body.error?.code], [400, ERRORS.invalidParams.code], `${path}: 400 -32602`);
  }
  const gone = await get(relay.url, '/api/messages/search?q=rollout&after=AAAAAAAAAAAAAAAA%3A2');
  t.same([gone.status, gone.body.error?.code], [410, ERRORS.cursorExpired.code], 'an unknown cursor: 410 -32007');
});
