import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, RpcError, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

const kinds = (events: Array<{ kind: string }>) => events.map((e) => e.kind);

t.test('of 20 concurrent claimers exactly one wins and a released-then-reclaimed task makes the old token stale', async (t) => {
  const relay = await startRelay(t);
  const agents = await Promise.all(Array.from({ length: 20 }, (_, i) => connectAgent(t, relay.wsUrl, { id: `w${String(i + 1).padStart(2, '0')}`, tags: ['workers'] })));
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const { task, created } = await observer.call('task/create', { title: 'rebuild index', target: 'tag:workers', from: 'ext:ci' });
  t.equal(created, true);
  t.equal(task.status, 'open');
  t.equal(task.claimedBy, null);

  const outcomes = await Promise.allSettled(agents.map((a) => a.rpc.call('task/claim', { id: task.id })));
  const wins = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [{ agent: agents[i]!, result: o.value }] : []));
  const losses = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as unknown] : []));
  t.equal(wins.length, 1, 'exactly one claimer wins');
  t.equal(losses.length, 19, 'the other 19 lose');
  const winner = wins[0]!;
  t.equal(winner.result.claimToken, 1, 'the first claim is attempt 1');
  t.equal(winner.result.task.claimedBy, winner.agent.id);
  t.equal(winner.result.task.status, 'claimed');
  for (const err of losses) {
    t.ok(err instanceof RpcError, 'a loser gets a JSON-RPC error');
    const e = err as RpcError;
    t.equal(e.code, -32003);
    t.equal(e.error.data?.owner, winner.agent.id, 'error.data.owner names the winner');
  }
  const claimedEvents = (await observer.call('event/list', { kind: 'task.claimed', taskId: task.id })).events;
  t.equal(claimedEvents.length, 1, 'only one task.claimed event was recorded');
  t.equal(claimedEvents[0].agentId, winner.agent.id);

  // The owner gives it back with its token: the task is open again and announced once more.
  const released = await winner.agent.rpc.call('task/release', { id: task.id, claimToken: 1 });
  t.equal(released.task.status, 'open');
  t.equal(released.task.claimedBy, null);
  const second = agents.find((a) => a !== winner.agent)!;
  await second.rpc.until(() => second.rpc.messages().filter((m) => m.taskId === task.id).length === 2, 3000, 're-announcement');
  const announcements = second.rpc.messages().filter((m) => m.taskId === task.id);
  t.equal(announcements[1]!.claimable, true);
  t.equal(announcements[1]!.from, 'ext:relay');

  const reclaim = await second.rpc.call('task/claim', { id: task.id });
  t.equal(reclaim.claimToken, 2, 'the second claim is attempt 2');
  t.equal(reclaim.task.claimedBy, second.id);

  const stale = await rpcErrorOf(winner.agent.rpc.call('task/update', { id: task.id, claimToken: 1, status: 'done' }));
  t.equal(stale.code, -32006, 'the first owner token is stale');
  t.equal(stale.error.data?.owner, second.id);
  const staleRelease = await rpcErrorOf(winner.agent.rpc.call('task/release', { id: task.id, claimToken: 1 }));
  t.equal(staleRelease.code, -32006, 'a stale token cannot release either');
  const staleOwn = await rpcErrorOf(second.rpc.call('task/update', { id: task.id, claimToken: 1, progress: 5 }));
  t.equal(staleOwn.code, -32006, 'even the current owner cannot use the old attempt number');

  const ok = await second.rpc.call('task/update', { id: task.id, claimToken: 2, status: 'in_progress', progress: 20 });
  t.equal(ok.task.status, 'in_progress');
  t.equal(ok.task.progress, 20);
  t.equal(ok.task.claimedBy, second.id);
  const got = await observer.call('task/get', { id: task.id });
  t.same(kinds(got.events), ['task.created', 'task.claimed', 'task.released', 'task.claimed', 'task.updated']);
});

t.test('a claimable message creates a task that message/claim claims', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const sent = await alice.rpc.call('message/send', { to: 'bob', subject: 'review PR 12', body: 'please review', claimable: true });
  t.equal(sent.message.claimable, true);
  t.type(sent.message.taskId, 'number');
  t.ok(sent.task, 'the send result carries the task');
  t.equal(sent.task.id, sent.message.taskId);
  t.equal(sent.task.messageId, sent.message.id);
  t.equal(sent.task.title, 'review PR 12');
  t.equal(sent.task.target, 'bob');
  t.equal(sent.task.source, 'alice');
  t.equal(sent.task.status, 'open');

  await bob.rpc.until(() => bob.rpc.messages().length === 1);
  const pushed = bob.rpc.messages()[0]!;
  t.equal(pushed.id, sent.message.id);
  t.equal(pushed.taskId, sent.task.id);
  t.equal(pushed.claimable, true);
  // The claimable message is the announcement: no second message for the same task.
  const all = await bob.rpc.call('message/list', {});
  t.equal(all.messages.length, 1);

  const claimed = await bob.rpc.call('message/claim', { id: sent.message.id });
  t.equal(claimed.claimToken, 1);
  t.equal(claimed.task.id, sent.task.id);
  t.equal(claimed.task.claimedBy, 'bob');
  t.equal(claimed.task.status, 'claimed');

  const taken = await rpcErrorOf(alice.rpc.call('message/claim', { id: sent.message.id }));
  t.equal(taken.code, -32003);
  t.equal(taken.error.data?.owner, 'bob');

  const plain = await alice.rpc.call('message/send', { to: 'bob', body: 'just chatting' });
  t.equal(plain.message.taskId, null);
  t.equal(plain.task, undefined);
  t.equal((await rpcErrorOf(bob.rpc.call('message/claim', { id: plain.message.id }))).code, -32003, 'a plain message is not claimable');
  t.equal((await rpcErrorOf(bob.rpc.call('message/claim', { id: 999999 }))).code, -32002, 'an unknown message is not found');

  const observer = await WsRpc.connect(t, relay.wsUrl);
  t.equal((await rpcErrorOf(observer.call('message/claim', { id: sent.message.id }))).code, -32004, 'an observer cannot claim');
});

t.test('task lifecycle rules are enforced from open to done', async (t) => {
  const relay = await startRelay(t);
  const owner = await connectAgent(t, relay.wsUrl, { id: 'owner' });
  const other = await connectAgent(t, relay.wsUrl, { id: 'other' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const { task } = await observer.call('task/create', { title: 'ship it', target: 'owner', from: 'ext:ci' });

  const openUpdate = await rpcErrorOf(owner.rpc.call('task/update', { id: task.id, status: 'in_progress' }));
  t.equal(openUpdate.code, -32003, 'an open task cannot be updated before it is claimed');
  t.equal(openUpdate.error.data?.status, 'open');
  t.equal((await rpcErrorOf(owner.rpc.call('task/release', { id: task.id }))).code, -32003, 'an open task cannot be released');
  t.equal((await rpcErrorOf(owner.rpc.call('task/update', { id: 424242, status: 'in_progress' }))).code, -32002, 'an unknown task is not found');

  const { claimToken } = await owner.rpc.call('task/claim', { id: task.id });
  t.equal(claimToken, 1);

  const noToken = await rpcErrorOf(owner.rpc.call('task/update', { id: task.id, status: 'in_progress' }));
  t.equal(noToken.code, -32602, 'the owner must carry its claimToken');
  t.match(noToken.message, /claimToken/);

  const intruder = await rpcErrorOf(other.rpc.call('task/update', { id: task.id, claimToken, status: 'done' }));
  t.equal(intruder.code, -32003, 'a non-owner agent cannot update, even with the token');
  t.equal(intruder.error.data?.owner, 'owner');
  const intruderNoToken = await rpcErrorOf(other.rpc.call('task/update', { id: task.id, status: 'in_progress' }));
  t.equal(intruderNoToken.code, -32003);
  t.equal(intruderNoToken.error.data?.owner, 'owner');
  t.equal((await rpcErrorOf(other.rpc.call('task/release', { id: task.id, claimToken }))).code, -32003, 'a non-owner agent cannot release');
  const observerUpdate = await rpcErrorOf(observer.call('task/update', { id: task.id, claimToken, status: 'done' }));
  t.equal(observerUpdate.code, -32003, 'an observer cannot drive a claimed task with a guessed token');
  t.equal((await observer.call('task/get', { id: task.id })).task.status, 'claimed', 'refused updates changed nothing');

  const p1 = await owner.rpc.call('task/update', { id: task.id, claimToken, status: 'in_progress', progress: 10 });
  t.equal(p1.task.status, 'in_progress');
  t.equal(p1.task.progress, 10);
  const p2 = await owner.rpc.call('task/update', { id: task.id, claimToken, progress: 35 });
  t.equal(p2.task.status, 'in_progress', 'a progress-only update keeps the status');
  t.equal(p2.task.progress, 35);
  const p3 = await owner.rpc.call('task/update', { id: task.id, claimToken, status: 'blocked', note: 'waiting for CI' });
  t.equal(p3.task.status, 'blocked');
  t.equal(p3.task.progress, 35, 'a status change without progress keeps the progress');
  t.equal(p3.task.closedAt, null);
  const p4 = await owner.rpc.call('task/update', { id: task.id, claimToken, status: 'done' });
  t.equal(p4.task.status, 'done');
  t.equal(p4.task.progress, 100, 'done without progress means 100');
  t.type(p4.task.closedAt, 'number');
  t.equal(p4.task.claimedBy, 'owner');

  const after = await rpcErrorOf(owner.rpc.call('task/update', { id: task.id, claimToken, progress: 50 }));
  t.equal(after.code, -32003, 'a terminal task cannot be updated');
  t.equal(after.error.data?.status, 'done');
  t.equal((await rpcErrorOf(owner.rpc.call('task/update', { id: task.id, claimToken, status: 'failed' }))).code, -32003, 'a terminal status is final');
  t.equal((await rpcErrorOf(observer.call('task/update', { id: task.id, status: 'canceled' }))).code, -32003, 'a done task cannot be canceled');
  t.equal((await rpcErrorOf(owner.rpc.call('task/release', { id: task.id, claimToken }))).code, -32003, 'a done task cannot be released');
  const reclaim = await rpcErrorOf(other.rpc.call('task/claim', { id: task.id }));
  t.equal(reclaim.code, -32003, 'a done task cannot be claimed');
  t.equal(reclaim.error.data?.status, 'done');

  const got = await observer.call('task/get', { id: task.id });
  t.equal(got.task.status, 'done');
  t.equal(got.task.progress, 100);
  t.same(kinds(got.events), ['task.created', 'task.claimed', 'task.updated', 'task.updated', 'task.updated', 'task.closed']);
  for (const e of got.events) t.equal(e.taskId, task.id);
  t.same(
    got.events.map((e: any) => e.data.status ?? null),
    [null, null, 'in_progress', 'in_progress', 'blocked', 'done'],
  );
  t.same(
    got.events.map((e: any) => e.data.progress ?? null),
    [null, null, 10, 35, 35, 100],
  );
  t.equal(got.events[4].data.note, 'waiting for CI');
  t.equal(got.events[1].agentId, 'owner');
  t.equal(got.events[5].agentId, 'owner');
  const ids = got.events.map((e: any) => e.id);
  t.same(
    ids,
    [...ids].sort((a: number, b: number) => a - b),
    'events come in order',
  );
  t.equal((await rpcErrorOf(observer.call('task/get', { id: 424242 }))).code, -32002);
});

t.test('observers, which have no registration, can cancel open and claimed tasks', async (t) => {
  const relay = await startRelay(t);
  const owner = await connectAgent(t, relay.wsUrl, { id: 'owner' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const a = (await observer.call('task/create', { title: 'a', target: 'owner', from: 'ext:ci' })).task;
  const b = (await observer.call('task/create', { title: 'b', target: 'owner', from: 'ext:ci' })).task;

  const canceledOpen = await observer.call('task/update', { id: a.id, status: 'canceled', note: 'not needed' });
  t.equal(canceledOpen.task.status, 'canceled');
  t.type(canceledOpen.task.closedAt, 'number');

  const { claimToken } = await owner.rpc.call('task/claim', { id: b.id });
  const canceledClaimed = await observer.call('task/update', { id: b.id, status: 'canceled' });
  t.equal(canceledClaimed.task.status, 'canceled');
  const stale = await rpcErrorOf(owner.rpc.call('task/update', { id: b.id, claimToken, status: 'done' }));
  t.equal(stale.code, -32003, 'the owner cannot finish a canceled task');
  t.equal(stale.error.data?.status, 'canceled');

  const closed = (await observer.call('event/list', { kind: 'task.closed' })).events;
  t.same(
    closed.map((e: any) => [e.taskId, e.data.status, e.data.by]),
    [
      [a.id, 'canceled', 'observer'],
      [b.id, 'canceled', 'observer'],
    ],
  );
  t.equal(closed[0].data.note, 'not needed');
  t.equal(closed[1].agentId, 'owner', 'the closed event names the owner it was taken from');
});

t.test('task/updated notifications reach the owner and observers subscribed to tasks, and nobody else', async (t) => {
  const relay = await startRelay(t);
  const owner = await connectAgent(t, relay.wsUrl, { id: 'owner' });
  const bystander = await connectAgent(t, relay.wsUrl, { id: 'bystander' });
  const watcher = await WsRpc.connect(t, relay.wsUrl);
  const unsubscribed = await WsRpc.connect(t, relay.wsUrl);
  await watcher.call('stream/subscribe', { topics: ['tasks'] });

  const { task } = await unsubscribed.call('task/create', { title: 'watch me', target: 'owner', from: 'ext:ci' });
  const { claimToken } = await owner.rpc.call('task/claim', { id: task.id });
  await owner.rpc.call('task/update', { id: task.id, claimToken, status: 'in_progress', progress: 50 });
  await owner.rpc.call('task/update', { id: task.id, claimToken, status: 'done' });

  await watcher.until(() => watcher.of('task/updated').length === 4, 3000, 'watcher task/updated');
  await owner.rpc.until(() => owner.rpc.of('task/updated').length === 3, 3000, 'owner task/updated');
  const seen = watcher.of('task/updated');
  t.same(
    seen.map((n) => n.event.kind),
    ['task.created', 'task.claimed', 'task.updated', 'task.closed'],
  );
  t.same(
    seen.map((n) => n.task.status),
    ['open', 'claimed', 'in_progress', 'done'],
  );
  for (const n of seen) {
    t.equal(n.task.id, task.id);
    t.equal(n.event.taskId, task.id);
  }
  t.equal(seen[2]!.task.progress, 50);
  const mine = owner.rpc.of('task/updated');
  t.same(
    mine.map((n) => n.event.kind),
    ['task.claimed', 'task.updated', 'task.closed'],
  );
  t.same(
    mine.map((n) => n.task.status),
    ['claimed', 'in_progress', 'done'],
  );

  // A release notifies the previous owner, although the task no longer names it.
  const t2 = (await unsubscribed.call('task/create', { title: 'give back', target: 'owner', from: 'ext:ci' })).task;
  const c2 = await owner.rpc.call('task/claim', { id: t2.id });
  await owner.rpc.call('task/release', { id: t2.id, claimToken: c2.claimToken });
  await owner.rpc.until(() => owner.rpc.of('task/updated').length === 5, 3000, 'owner release notification');
  const last = owner.rpc.of('task/updated').at(-1)!;
  t.equal(last.event.kind, 'task.released');
  t.equal(last.task.claimedBy, null);
  t.equal(last.event.data.previousOwner, 'owner');
  await watcher.until(() => watcher.of('task/updated').length === 7, 3000, 'watcher second task');

  // Everything above has been pushed; a round trip on each quiet connection flushes what it got.
  await bystander.rpc.call('agent/list', {});
  await unsubscribed.call('agent/list', {});
  t.equal(bystander.rpc.of('task/updated').length, 0, 'an uninvolved agent gets no task notifications');
  t.equal(unsubscribed.of('task/updated').length, 0, 'an unsubscribed observer gets no task notifications');
});

t.test('event/list filters by kind and by taskId', async (t) => {
  const relay = await startRelay(t);
  const a = await connectAgent(t, relay.wsUrl, { id: 'a' });
  const b = await connectAgent(t, relay.wsUrl, { id: 'b' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const t1 = (await observer.call('task/create', { title: 't1', target: 'a', from: 'ext:ci' })).task;
  const t2 = (await observer.call('task/create', { title: 't2', target: 'b', from: 'ext:ci' })).task;
  const c1 = await a.rpc.call('task/claim', { id: t1.id });
  const c2 = await b.rpc.call('task/claim', { id: t2.id });
  await a.rpc.call('task/update', { id: t1.id, claimToken: c1.claimToken, progress: 30 });
  await b.rpc.call('task/update', { id: t2.id, claimToken: c2.claimToken, status: 'failed', note: 'flaky' });

  const claimed = (await observer.call('event/list', { kind: 'task.claimed' })).events;
  t.same(
    claimed.map((e: any) => [e.taskId, e.agentId]),
    [
      [t1.id, 'a'],
      [t2.id, 'b'],
    ],
  );
  const ofT2 = (await observer.call('event/list', { taskId: t2.id })).events;
  t.same(kinds(ofT2), ['task.created', 'task.claimed', 'task.closed']);
  for (const e of ofT2) t.equal(e.taskId, t2.id);
  const both = (await observer.call('event/list', { kind: 'task.updated', taskId: t1.id })).events;
  t.equal(both.length, 1);
  t.equal(both[0].data.progress, 30);
  t.same((await observer.call('event/list', { kind: 'task.updated', taskId: t2.id })).events, [], 'kind and taskId combine');
  const online = (await observer.call('event/list', { kind: 'agent.online' })).events;
  t.same(
    online.map((e: any) => [e.agentId, e.taskId]),
    [
      ['a', null],
      ['b', null],
    ],
  );
  const all = (await observer.call('event/list', {})).events;
  t.equal(all.length, 8, 'two agent.online and three events for each task');
  const since = (await observer.call('event/list', { since: claimed[0].id, kind: 'task.claimed' })).events;
  t.same(
    since.map((e: any) => e.taskId),
    [t2.id],
    'since combines with kind',
  );
});
