import t from 'tap';
import type { Test } from 'tap';
import { inbox } from '../../broker/domain/delivery.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent, RpcError, WsRpc, untilDisconnected } from '../helpers/ws-client.js';

type Agent = Awaited<ReturnType<typeof connectAgent>>;

/** Run a call that must fail and return its RpcError. */
async function rpcError(t: Test, p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  t.fail('expected the call to be refused');
  throw new Error('call unexpectedly succeeded');
}

/** Register an agent, then take it offline and drop its socket. */
async function offlineAgent(t: Test, relay: TestRelay, params: Record<string, unknown>): Promise<Agent> {
  const a = await connectAgent(t, relay.wsUrl, params);
  const r = await a.rpc.call('agent/update', { status: 'offline' });
  t.equal(r.agent.status, 'offline', `${a.id} is offline`);
  await a.rpc.close();
  await untilDisconnected(t, relay.wsUrl, a.id);
  return a;
}

/**
 * Pushes follow commit order on each socket, so once a later direct "barrier" message has arrived,
 * every earlier fan-out that was going to reach the agent has arrived too: what is absent is absent.
 */
async function barrier(observer: WsRpc, agents: Agent[]): Promise<number> {
  let last = 0;
  for (const a of agents) {
    const r = await observer.call('message/send', { to: a.id, from: 'ext:barrier', body: 'barrier' });
    last = r.message.id;
  }
  for (const a of agents) {
    await a.rpc.until(() => a.rpc.messages().some((m) => m.from === 'ext:barrier'), 3000, `barrier at ${a.id}`);
  }
  return last;
}

function receivedIds(a: Agent): number[] {
  return a.rpc
    .messages()
    .filter((m) => m.from !== 'ext:barrier')
    .map((m) => m.id as number);
}

const sorted = (xs: string[]): string[] => [...xs].sort();

t.test('a direct id reaches that agent whatever its channels, and reaches an offline agent when it resumes', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob', channels: ['ops'] });

  const onDev = await alice.rpc.call('message/send', { to: 'bob', body: 'on dev', channel: 'dev' });
  t.same(onDev.recipients, ['bob'], 'channel does not filter a direct id');
  t.same(onDev.warnings, []);
  t.equal(onDev.message.to, 'bob');
  t.equal(onDev.message.channel, 'dev');
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'bob gets the dev message');
  t.equal(bob.rpc.messages()[0]!.id, onDev.message.id);
  t.equal(bob.rpc.messages()[0]!.body, 'on dev');

  const carol = await offlineAgent(t, relay, { id: 'carol', channels: ['ops'] });
  const queued = await alice.rpc.call('message/send', { to: 'carol', body: 'while you were out', channel: 'dev' });
  t.same(queued.recipients, ['carol'], 'an offline direct recipient still gets the message');
  t.same(queued.warnings, [{ agentId: 'carol', reason: 'offline' }], 'and the sender is told it is offline');

  const back = await WsRpc.connect(t, relay.wsUrl);
  const reg = await back.call('agent/register', { id: 'carol', agentToken: carol.token, since: carol.cursor });
  t.equal(reg.agent.status, 'online');
  await back.until(() => back.messages().length === 1, 3000, 'carol gets the missed message on resume');
  t.equal(back.messages()[0]!.id, queued.message.id);
  t.equal(back.messages()[0]!.body, 'while you were out');
  t.equal(back.messages()[0]!.from, 'alice');
});

t.test('a direct message to an unknown id is refused with -32002 and nothing is stored', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const err = await rpcError(t, alice.rpc.call('message/send', { to: 'nobody-here', body: 'hello?' }));
  t.equal(err.code, -32002);
  t.match(err.message, /nobody-here/, 'the error names the missing id');

  const observer = await WsRpc.connect(t, relay.wsUrl);
  const err2 = await rpcError(t, observer.call('message/send', { to: 'nobody-here', from: 'ext:ci', body: 'hello?' }));
  t.equal(err2.code, -32002, 'observers get the same refusal');

  const all = await observer.call('message/list', {});
  t.same(all.messages, [], 'no message was stored');
  t.equal(all.cursor, 0);
});

interface FormCase {
  name: string;
  to: string;
  /** Registration params for agents the target form matches. */
  member: (i: number) => Record<string, unknown>;
  /** Registration params for an agent it must not match (ignored by broadcast, which matches all). */
  outsider: Record<string, unknown>;
  outsiderMatches: boolean;
}

const FORMS: FormCase[] = [
  {
    name: 'tag:NAME reaches every agent carrying the tag',
    to: 'tag:reviewer',
    member: () => ({ tags: ['linter', 'reviewer'] }),
    outsider: { tags: ['builder', 'reviewers'] },
    outsiderMatches: false,
  },
  {
    name: 'cap:NAME reaches every agent with the capability',
    to: 'cap:review',
    member: () => ({ capabilities: ['review', 'code'] }),
    outsider: { capabilities: ['build'], tags: ['review'] },
    outsiderMatches: false,
  },
  {
    name: 'label:NAME reaches every agent whose label equals NAME, case-insensitively',
    to: 'label:rEvIeWeR',
    member: (i) => ({ label: ['Reviewer', 'REVIEWER', 'reviewer', 'ReViewer', 'reVIEWer'][i % 5] }),
    outsider: { label: 'Reviewer 2', tags: ['reviewer'] },
    outsiderMatches: false,
  },
  {
    name: 'broadcast reaches every agent',
    to: 'broadcast',
    member: () => ({}),
    outsider: { label: 'Anyone' },
    outsiderMatches: true,
  },
];

for (const form of FORMS) {
  t.test(`${form.name}, skipping offline agents, the sender, and agents whose channels exclude the message's channel`, async (t) => {
    const relay = await startRelay(t);
    const observer = await WsRpc.connect(t, relay.wsUrl);
    const sender = await connectAgent(t, relay.wsUrl, { id: 'sender', ...form.member(0) });
    const open = await connectAgent(t, relay.wsUrl, { id: 'open', channels: [], ...form.member(1) });
    const opsOnly = await connectAgent(t, relay.wsUrl, { id: 'ops-only', channels: ['ops'], ...form.member(2) });
    const devOps = await connectAgent(t, relay.wsUrl, { id: 'dev-ops', channels: ['dev', 'ops'], ...form.member(3) });
    const outsider = await connectAgent(t, relay.wsUrl, { id: 'outsider', channels: [], ...form.outsider });
    await offlineAgent(t, relay, { id: 'gone', channels: [], ...form.member(4) });

    const plus = (ids: string[]) => sorted(form.outsiderMatches ? [...ids, 'outsider'] : ids);

    const noChannel = await sender.rpc.call('message/send', { to: form.to, body: 'no channel' });
    t.same(sorted(noChannel.recipients), plus(['dev-ops', 'open', 'ops-only']), 'no channel: every matching online agent but the sender');
    t.same(noChannel.warnings, []);
    t.equal(noChannel.message.to, form.to);
    t.equal(noChannel.message.from, 'sender');

    const ops = await sender.rpc.call('message/send', { to: form.to, body: 'ops', channel: 'ops' });
    t.same(sorted(ops.recipients), plus(['dev-ops', 'open', 'ops-only']), 'channel ops');

    const dev = await sender.rpc.call('message/send', { to: form.to, body: 'dev', channel: 'dev' });
    t.same(sorted(dev.recipients), plus(['dev-ops', 'open']), 'channel dev skips the ops-only agent');

    const qa = await sender.rpc.call('message/send', { to: form.to, body: 'qa', channel: 'qa' });
    t.same(sorted(qa.recipients), plus(['open']), 'channel qa reaches only agents with no channel list');
    t.same(qa.warnings, []);

    // Deliveries recorded match the recipients returned.
    const got = await observer.call('message/get', { id: dev.message.id });
    t.same(sorted(got.deliveries.map((d: { agentId: string }) => d.agentId)), plus(['dev-ops', 'open']), 'deliveries match recipients');

    await barrier(observer, [sender, open, opsOnly, devOps, outsider]);
    const ids = { none: noChannel.message.id, ops: ops.message.id, dev: dev.message.id, qa: qa.message.id };
    t.same(receivedIds(sender), [], 'the sender never receives its own fan-out');
    t.same(receivedIds(open), [ids.none, ids.ops, ids.dev, ids.qa], 'an agent with empty channels gets everything');
    t.same(receivedIds(opsOnly), [ids.none, ids.ops]);
    t.same(receivedIds(devOps), [ids.none, ids.ops, ids.dev]);
    t.same(receivedIds(outsider), form.outsiderMatches ? [ids.none, ids.ops, ids.dev, ids.qa] : [], 'the outsider');

    // The offline member is not a recipient of any of them.
    // Only gone itself may list its inbox over the wire (read rule): look at it in the relay.
    const gone = await inbox(relay.core, 'gone', { since: 0, limit: 100, channel: null, threadId: null, unread: false });
    t.same(
      gone.map((m) => m.id),
      [],
      'the offline agent got none of the fan-out',
    );
  });
}

t.test('an observer fan-out reaches every matching agent, since it is no agent itself', async (t) => {
  const relay = await startRelay(t);
  const a = await connectAgent(t, relay.wsUrl, { id: 'a', tags: ['ci'] });
  const b = await connectAgent(t, relay.wsUrl, { id: 'b', tags: ['ci'], channels: ['builds'] });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const r = await observer.call('message/send', { to: 'tag:ci', from: 'ext:ci', body: 'build green', channel: 'builds' });
  t.same(sorted(r.recipients), ['a', 'b']);
  t.same(r.warnings, []);
  t.equal(r.message.from, 'ext:ci');
  for (const x of [a, b]) {
    await x.rpc.until(() => x.rpc.messages().length === 1, 3000, `${x.id} gets it`);
    t.equal(x.rpc.messages()[0]!.from, 'ext:ci');
    t.equal(x.rpc.messages()[0]!.id, r.message.id);
  }
});

t.test('zero recipients is not an error but is reported as a no_recipients warning', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice', tags: ['solo'] });
  await connectAgent(t, relay.wsUrl, { id: 'bob', channels: ['ops'] });
  await offlineAgent(t, relay, { id: 'carol', tags: ['away'] });

  const cases: Array<[string, Record<string, unknown>]> = [
    ['a tag nobody carries', { to: 'tag:nobody' }],
    ['a capability nobody has', { to: 'cap:nothing' }],
    ['a label nobody wears', { to: 'label:Nobody' }],
    ['a tag only the sender carries', { to: 'tag:solo' }],
    ['a tag only an offline agent carries', { to: 'tag:away' }],
    ['a broadcast on a channel every other agent excludes', { to: 'broadcast', channel: 'dev' }],
  ];
  const observer = await WsRpc.connect(t, relay.wsUrl);
  for (const [what, params] of cases) {
    const r = await alice.rpc.call('message/send', { ...params, body: what });
    t.same(r.recipients, [], `${what}: no recipients`);
    t.same(r.warnings, [{ agentId: '', reason: 'no_recipients' }], `${what}: reported`);
    t.type(r.message.id, 'number', `${what}: the message is still stored`);
    const got = await observer.call('message/get', { id: r.message.id });
    t.same(got.deliveries, [], `${what}: no deliveries`);
  }
});

t.test('offline and not-ready recipients are reported in warnings', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const ready = await connectAgent(t, relay.wsUrl, { id: 'ready', tags: ['team'] });
  await connectAgent(t, relay.wsUrl, { id: 'sleepy', tags: ['team'], ready: false });
  const later = await connectAgent(t, relay.wsUrl, { id: 'later', tags: ['team'] });
  await offlineAgent(t, relay, { id: 'gone', tags: ['team'] });

  // An agent that turns not-ready after registering counts too.
  const hb = await later.rpc.call('agent/heartbeat', { ready: false });
  t.equal(hb.agent.ready, false);

  const fan = await alice.rpc.call('message/send', { to: 'tag:team', body: 'team' });
  t.same(sorted(fan.recipients), ['later', 'ready', 'sleepy'], 'not-ready agents are still recipients; offline ones are not');
  const byId = (ws: Array<{ agentId: string }>) => [...ws].sort((x, y) => x.agentId.localeCompare(y.agentId));
  t.same(byId(fan.warnings), [
    { agentId: 'later', reason: 'not_ready' },
    { agentId: 'sleepy', reason: 'not_ready' },
  ]);

  const direct = await alice.rpc.call('message/send', { to: 'sleepy', body: 'you there?' });
  t.same(direct.recipients, ['sleepy']);
  t.same(direct.warnings, [{ agentId: 'sleepy', reason: 'not_ready' }]);

  const off = await alice.rpc.call('message/send', { to: 'gone', body: 'later then' });
  t.same(off.recipients, ['gone']);
  t.same(off.warnings, [{ agentId: 'gone', reason: 'offline' }], 'offline wins over readiness: one warning per recipient');

  const ok = await alice.rpc.call('message/send', { to: 'ready', body: 'hi' });
  t.same(ok.warnings, [], 'an online, ready recipient carries no warning');
  await ready.rpc.until(() => ready.rpc.messages().length === 2, 3000, 'ready gets the team message and the direct one');

  // Readiness restored: the warning goes away.
  await later.rpc.call('agent/heartbeat', { ready: true });
  const again = await alice.rpc.call('message/send', { to: 'later', body: 'now?' });
  t.same(again.warnings, []);
});

t.test('an observer sends as ext:NAME, and an agent that passes from is refused with -32602', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const observer = await WsRpc.connect(t, relay.wsUrl);

  const sent = await observer.call('message/send', { to: 'bob', from: 'ext:ci', body: 'pipeline failed' });
  t.equal(sent.message.from, 'ext:ci');
  t.same(sent.recipients, ['bob']);
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 3000, 'bob gets the observer message');
  t.equal(bob.rpc.messages()[0]!.from, 'ext:ci');
  t.equal(bob.rpc.messages()[0]!.body, 'pipeline failed');

  const asExt = await rpcError(t, alice.rpc.call('message/send', { to: 'bob', from: 'ext:ci', body: 'spoof' }));
  t.equal(asExt.code, -32602, 'an agent may not choose an ext: sender');
  t.match(asExt.message, /from/, 'the error names the field');

  const asOther = await rpcError(t, alice.rpc.call('message/send', { to: 'bob', from: 'carol', body: 'spoof' }));
  t.equal(asOther.code, -32602, 'nor another agent name');
  t.match(asOther.message, /from/);

  const noPrefix = await rpcError(t, observer.call('message/send', { to: 'bob', from: 'ci', body: 'x' }));
  t.equal(noPrefix.code, -32602, 'an observer sender must be prefixed ext:');
  t.match(noPrefix.message, /from/);

  // None of the refused sends was stored or pushed.
  const all = await observer.call('message/list', {});
  t.same(
    all.messages.map((m: { id: number }) => m.id),
    [sent.message.id],
  );
  const last = await barrier(observer, [bob]);
  t.same(
    bob.rpc.messages().map((m) => m.id),
    [sent.message.id, last],
  );
});

t.test('a reply to an ext: sender is kept in its thread and reaches observers, no agent', async (t) => {
  const relay = await startRelay(t);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  await observer.call('stream/subscribe', { topics: ['messages'] });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const ask = await observer.call('message/send', { to: 'bob', body: 'status?', from: 'ext:dashboard' });
  const reply = await bob.rpc.call('message/send', { to: 'ext:dashboard', body: 'all green', replyTo: ask.message.id });
  t.same(reply.recipients, [], 'no agent receives it');
  t.same(reply.warnings, [], 'and that is not a warning: the sender is external');
  await observer.until(() => observer.messages().some((m) => m.id === reply.message.id), 3000, 'the observer sees the reply');
  const thread = await observer.call('thread/get', { id: ask.message.id });
  t.same(
    thread.messages.map((m: { body: string }) => m.body),
    ['status?', 'all green'],
  );
});
