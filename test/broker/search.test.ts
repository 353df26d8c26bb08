import t from 'tap';
import { prune } from '../../broker/domain/prune.js';
import { ERRORS } from '../../protocol/errors.js';
import { ManualClock, startRelay } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

/**
 * message/search against an in-process relay over real sockets and a real SQLite file: ranking and
 * snippets, every filter, paging, the read rule of message/list, query errors, freshness after a
 * send is acknowledged, and retention.
 */

interface Hit {
  message: { id: number; from: string; to: string; channel: string | null; subject: string | null; body: string };
  snippet: string;
}

const ids = (r: { hits: Hit[] }) => r.hits.map((h) => h.message.id);

async function rpcPost(url: string, method: string, params: unknown): Promise<any> {
  const res = await fetch(`${url}/rpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  return res.json();
}

t.test('ranked by relevance, subject above body, with a highlighted plain-text snippet', async (t) => {
  const relay = await startRelay(t);
  const obs = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const send = async (p: Record<string, unknown>) => (await obs.call('message/send', { to: 'bob', from: 'ext:ci', ...p })).message.id as number;
  const once = await send({ body: 'the deploy of the API went fine, nothing else to report here today' });
  const twice = await send({ body: 'deploy failed, retrying the deploy' });
  const subject = await send({ subject: 'Deploy', body: 'see the log' });
  await send({ body: 'unrelated chatter about lunch' });

  const r = await obs.call('message/search', { query: 'deploy' });
  t.same(ids(r).sort(), [once, twice, subject].sort(), 'every message with the word, none without');
  t.equal(ids(r).at(-1), once, 'one mention in a long body ranks last');
  t.equal(ids(r)[0], subject, 'a subject match ranks first');
  t.equal(r.more, undefined, 'one page: no more');
  t.equal(r.nextCursor, undefined);
  const hit = r.hits.find((h: Hit) => h.message.id === twice)!;
  t.equal(hit.snippet, '«deploy» failed, retrying the «deploy»', 'matched words between « and »');
  t.equal(r.hits.find((h: Hit) => h.message.id === subject).snippet, '«Deploy»', 'a subject match shows the subject');
  t.match(r.hits.find((h: Hit) => h.message.id === once).message, { body: 'the deploy of the API went fine, nothing else to report here today' }, 'the hit carries the whole message');

  const long = await send({ body: `${'word '.repeat(40)}needle ${'word '.repeat(40)}` });
  const cut = (await obs.call('message/search', { query: 'needle' })).hits[0];
  t.equal(cut.message.id, long);
  t.match(cut.snippet, /^….*«needle».*…$/, 'a long body is cut around the match, cuts marked with …');

  t.same(ids(await obs.call('message/search', { query: 'DEPLOY' })).sort(), ids(r).sort(), 'case does not matter');
  const accent = await send({ body: 'le café est prêt' });
  t.same(ids(await obs.call('message/search', { query: 'cafe pret' })), [accent], 'diacritics do not matter');
  t.same(ids(await obs.call('message/search', { query: 'depl*' })).sort(), ids(r).sort(), 'a trailing * is a prefix');
  t.same(ids(await obs.call('message/search', { query: 'deploy failed' })), [twice], 'every word must match');
  t.same(ids(await obs.call('message/search', { query: '"failed retrying"' })), [twice], 'a quoted phrase');
  t.same(ids(await obs.call('message/search', { query: '"retrying failed"' })), [], 'a phrase keeps its word order');
});

t.test('filters: channel, from, to, since, limit', async (t) => {
  const relay = await startRelay(t);
  const obs = await WsRpc.connect(t, relay.wsUrl);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice', tags: ['crew'] });
  await connectAgent(t, relay.wsUrl, { id: 'bob', tags: ['crew'] });
  const a = (await alice.rpc.call('message/send', { to: 'bob', body: 'build green', channel: 'ci' })).message.id;
  const b = (await obs.call('message/send', { to: 'tag:crew', from: 'ext:ci', body: 'build red', channel: 'ci' })).message.id;
  const c = (await obs.call('message/send', { to: 'bob', from: 'ext:ops', body: 'build queued' })).message.id;
  const search = async (p: Record<string, unknown>) => ids(await obs.call('message/search', { query: 'build', ...p })).sort();
  t.same(await search({}), [a, b, c]);
  t.same(await search({ channel: 'ci' }), [a, b], 'channel');
  t.same(await search({ from: 'alice' }), [a], 'from an agent');
  t.same(await search({ from: 'ext:ops' }), [c], 'from an observer name');
  t.same(await search({ to: 'tag:crew' }), [b], 'to the exact target');
  t.same(await search({ to: 'bob' }), [a, c]);
  t.same(await search({ since: a }), [b, c], 'since: ids above the cursor');
  t.same(await search({ channel: 'ci', from: 'ext:ci', to: 'tag:crew', since: a - 1 }), [b], 'filters combine');
  t.equal((await obs.call('message/search', { query: 'build', limit: 1 })).hits.length, 1, 'limit');
  for (const bad of [{ limit: 0 }, { limit: 101 }, { to: 'Not A Target' }, { since: -1 }, { channel: '' }]) {
    const err = await rpcErrorOf(obs.call('message/search', { query: 'build', ...bad }));
    t.equal(err.code, ERRORS.invalidParams.code, `${JSON.stringify(bad)}: -32602`);
  }
});

t.test('paging: every hit once, in rank order, and later messages stay out of a paged search', async (t) => {
  const relay = await startRelay(t);
  const obs = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  // Varied lengths and counts give varied scores; some tie.
  for (let i = 0; i < 23; i++) await obs.call('message/send', { to: 'bob', body: `${'alpha '.repeat((i % 4) + 1)}${'filler '.repeat(i % 7)}n${i}` });
  await obs.call('message/send', { to: 'bob', body: 'beta only' });
  const all = await obs.call('message/search', { query: 'alpha', limit: 100 });
  t.equal(all.hits.length, 23);
  const seen: number[] = [];
  let after: string | undefined;
  let pages = 0;
  do {
    const page = await obs.call('message/search', { query: 'alpha', limit: 5, ...(after ? { after } : {}) });
    pages++;
    seen.push(...ids(page));
    t.equal(page.more === true, page.nextCursor !== undefined, 'more and nextCursor come together');
    after = page.nextCursor;
    // A message sent while paging is not in this search (its first page fixed the range).
    if (pages === 1) await obs.call('message/send', { to: 'bob', body: 'alpha alpha alpha alpha late' });
  } while (after);
  t.equal(pages, 5, '23 hits in pages of 5');
  t.same(seen, ids(all), 'the pages together are the one-page answer: no duplicate, no gap, same order');
  t.equal((await obs.call('message/search', { query: 'alpha', limit: 100 })).hits.length, 24, 'a new search finds the late message');
  const one = await obs.call('message/search', { query: 'alpha', limit: 5 });
  const other = await obs.call('message/search', { query: 'something else', limit: 5, after: one.nextCursor });
  t.same(ids(other), ids(await obs.call('message/search', { query: 'alpha', limit: 5, after: one.nextCursor })), "a later page is the first page's search, whatever query it names");
  t.ok(
    other.hits.every((h: Hit) => h.snippet.includes('«alpha»')),
    "its snippets mark the first page's words",
  );
  for (const bad of ['nope', '1:2', 'AAAAAAAAAAAAAAAA:x']) {
    const err = await rpcErrorOf(obs.call('message/search', { query: 'alpha', after: bad }));
    t.equal(err.code, ERRORS.invalidParams.code, `after ${bad}: -32602`);
    t.match(err.message, /after/, 'names the field');
  }
  const unknown = await rpcErrorOf(obs.call('message/search', { query: 'alpha', after: 'AAAAAAAAAAAAAAAA:5' }));
  t.equal(unknown.code, ERRORS.cursorExpired.code, 'a cursor the relay does not keep: -32007, search again');
  // A cursor is its caller's: bob cannot page the observer's search of the global feed.
  const first = await obs.call('message/search', { query: 'alpha', limit: 5 });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob2' });
  t.equal((await rpcErrorOf(bob.rpc.call('message/search', { query: 'alpha', after: first.nextCursor }))).code, ERRORS.cursorExpired.code, "another caller's cursor: -32007");
});

t.test('a page stops at the 1 MiB result budget and the next one starts after its last hit', async (t) => {
  const relay = await startRelay(t);
  const obs = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const sent: number[] = [];
  for (let i = 0; i < 8; i++) sent.push((await obs.call('message/send', { to: 'bob', body: `bulky ${i} ${'x'.repeat(200_000)}` })).message.id);
  const seen: number[] = [];
  let page = await obs.call('message/search', { query: 'bulky' });
  t.ok(page.hits.length < 8 && page.more === true, `the first page stopped at the budget (${page.hits.length} hits)`);
  seen.push(...ids(page));
  while (page.nextCursor) {
    page = await obs.call('message/search', { query: 'bulky', after: page.nextCursor });
    seen.push(...ids(page));
  }
  t.same([...seen].sort(), [...sent].sort(), 'every hit once across the pages');
});

t.test("a search's pages are kept 10 minutes; past that its cursor is -32007 and a new search starts over", async (t) => {
  const clock = new ManualClock();
  const relay = await startRelay(t, {}, { clock });
  const obs = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  for (let i = 0; i < 3; i++) await obs.call('message/send', { to: 'bob', body: `gamma ${i}` });
  const first = await obs.call('message/search', { query: 'gamma', limit: 1 });
  clock.advance(9 * 60_000);
  t.equal((await obs.call('message/search', { query: 'gamma', limit: 1, after: first.nextCursor })).hits.length, 1, 'within 10 minutes: the next page');
  clock.advance(60_000);
  const err = await rpcErrorOf(obs.call('message/search', { query: 'gamma', limit: 1, after: first.nextCursor }));
  t.equal(err.code, ERRORS.cursorExpired.code, 'after 10 minutes: -32007');
  t.match(err.message, /search again/, 'the message says what to do');
  t.equal((await obs.call('message/search', { query: 'gamma', limit: 5 })).hits.length, 3, 'a new search finds them all');
});

t.test('visibility follows message/list: an agent searches its inbox, an observer the global feed', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const obs = await WsRpc.connect(t, relay.wsUrl);
  const dm = (await alice.rpc.call('message/send', { to: 'carol', body: 'the staging password rotated' })).message.id;
  const toBob = (await alice.rpc.call('message/send', { to: 'bob', body: 'your password reset link' })).message.id;
  const fan = (await alice.rpc.call('message/send', { to: 'broadcast', body: 'password policy changes' })).message.id;

  const listed = async (rpc: WsRpc) => new Set(((await rpc.call('message/list', { limit: 1000 })).messages as Array<{ id: number }>).map((m) => m.id));
  for (const [name, rpc] of [
    ['alice', alice.rpc],
    ['bob', bob.rpc],
    ['carol', carol.rpc],
    ['observer', obs],
  ] as const) {
    const found = ids(await rpc.call('message/search', { query: 'password' }));
    const canList = await listed(rpc);
    t.ok(
      found.every((id) => canList.has(id)),
      `${name} finds only what message/list shows it`,
    );
    t.equal(found.length, [dm, toBob, fan].filter((id) => canList.has(id)).length, `${name} finds everything it can list`);
  }
  t.same(ids(await bob.rpc.call('message/search', { query: 'password' })).sort(), [toBob, fan].sort(), "bob cannot find alice's DM to carol");
  t.same(ids(await carol.rpc.call('message/search', { query: 'staging' })), [dm], 'carol finds it');
  t.same(ids(await alice.rpc.call('message/search', { query: 'password' })), [], 'the sender does not get its own sends (not its inbox)');
  t.same(ids(await obs.call('message/search', { query: 'password' })).sort(), [dm, toBob, fan].sort(), 'an observer searches the global feed');

  // Over POST /rpc the agent is named by agentId + agentToken, as for message/list.
  const asBob = await rpcPost(relay.url, 'message/search', { query: 'password', agentId: 'bob', agentToken: bob.token });
  t.same(ids(asBob.result).sort(), [toBob, fan].sort(), 'POST /rpc as bob: his inbox');
  const forged = await rpcPost(relay.url, 'message/search', { query: 'password', agentId: 'bob', agentToken: carol.token });
  t.equal(forged.error?.code, ERRORS.unauthorized.code, "carol's token does not search as bob");
  t.same(ids((await rpcPost(relay.url, 'message/search', { query: 'password' })).result).sort(), [dm, toBob, fan].sort(), 'POST /rpc without identity: the global feed');
});

t.test('an observer behind the relay token sees what message/list shows it; without the token, nothing', async (t) => {
  const token = 'a-long-enough-relay-token-for-search';
  const relay = await startRelay(t, { token });
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const call = async (method: string, params: unknown, h: Record<string, string> = headers) =>
    (await fetch(`${relay.url}/rpc`, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) })).json() as Promise<any>;
  await call('agent/register', { id: 'bob' });
  await call('message/send', { to: 'bob', from: 'ext:ci', body: 'nightly release notes' });
  const listed = (await call('message/list', {})).result.messages.map((m: { id: number }) => m.id);
  t.same(ids((await call('message/search', { query: 'release' })).result), listed, 'the same messages as message/list');
  const res = await fetch(`${relay.url}/rpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/search', params: { query: 'release' } }),
  });
  t.equal(res.status, 401, 'no relay token: 401');
});

t.test('a query with nothing to search for is a clear -32602; FTS5 syntax in user text is plain words', async (t) => {
  const relay = await startRelay(t);
  const obs = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const id = (await obs.call('message/send', { to: 'bob', body: 'NEAR the OR gate: (a AND b) - c* "quoted"' })).message.id;
  for (const query of ['!!!', '""', '* * *', '   ']) {
    const err = await rpcErrorOf(obs.call('message/search', { query }));
    t.equal(err.code, ERRORS.invalidParams.code, `${JSON.stringify(query)}: -32602`);
    t.match(err.message, /query/, 'the message names the field');
  }
  t.equal((await rpcErrorOf(obs.call('message/search', { query: 'x'.repeat(501) }))).code, ERRORS.invalidParams.code, 'a query over 500 chars');
  t.match((await rpcErrorOf(obs.call('message/search', { query: 'a b c d e f g h i j k l m n o p q' }))).message, /at most 16/, 'more than 16 terms');
  t.equal((await rpcErrorOf(obs.call('message/search', {}))).code, ERRORS.invalidParams.code, 'no query');
  for (const query of ['NEAR', 'OR gate', '(a AND b)', 'AND:b', '-c', 'quoted"', '"OR', 'NEAR(the gate)', '^the', 'c*']) {
    t.same(ids(await obs.call('message/search', { query })), [id], `${JSON.stringify(query)} is searched as words`);
  }
});

t.test('a message is found as soon as its send is acknowledged, over the WebSocket and POST /rpc', async (t) => {
  const relay = await startRelay(t);
  const obs = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  for (let i = 0; i < 20; i++) {
    const word = `fresh${i}word`;
    const sent = i % 2 ? (await obs.call('message/send', { to: 'bob', body: `a ${word}` })).message.id : (await rpcPost(relay.url, 'message/send', { to: 'bob', body: `a ${word}` })).result.message.id;
    t.same(ids(await obs.call('message/search', { query: word })), [sent], `send ${i} is searchable at once`);
  }
});

t.test('pruned messages leave the index', async (t) => {
  const clock = new ManualClock();
  const relay = await startRelay(t, { retentionDays: 1 }, { clock });
  const obs = await WsRpc.connect(t, relay.wsUrl);
  await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const old = (await obs.call('message/send', { to: 'bob', subject: 'incident', body: 'old incident report' })).message.id;
  clock.advance(2 * 86_400_000);
  const fresh = (await obs.call('message/send', { to: 'bob', body: 'new incident report' })).message.id;
  t.same(ids(await obs.call('message/search', { query: 'incident' })).sort(), [old, fresh].sort());
  const r = await prune(relay.core);
  t.equal(r.messages, 1, 'the old message was pruned');
  t.same(ids(await obs.call('message/search', { query: 'incident' })), [fresh], 'only the kept message is found');
  t.same(ids(await obs.call('message/search', { query: 'old' })), [], 'nothing of the pruned one is left');
  const db = (relay.core.store as unknown as { readerPragma(text: string): unknown }).readerPragma('integrity_check');
  t.equal(db, 'ok', 'the database is intact');
});
