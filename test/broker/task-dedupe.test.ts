import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

t.test('50 concurrent creates with one dedupeKey from 50 connections make exactly one task with 50 occurrences', async (t) => {
  const relay = await startRelay(t);
  const oncall = await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const observers = await Promise.all(range(50).map(() => WsRpc.connect(t, relay.wsUrl)));
  const results = await Promise.all(observers.map((o) => o.call('task/create', { title: 'disk full on db1', target: 'oncall', dedupeKey: 'disk-db1', source: 'grafana' })));
  t.equal(results.filter((r) => r.created === true).length, 1, 'exactly one create says created: true');
  t.equal(results.filter((r) => r.created === false).length, 49);
  const ids = new Set(results.map((r) => r.task.id));
  t.equal(ids.size, 1, 'every caller got the same task');
  const id = [...ids][0];
  t.same(
    results.map((r) => r.task.occurrences).sort((a, b) => a - b),
    range(50),
    'each create saw its own occurrence count, 1 through 50',
  );
  t.equal(results.find((r) => r.created)!.task.occurrences, 1, 'the creating call is the first occurrence');

  const got = await observers[0]!.call('task/get', { id });
  t.equal(got.task.occurrences, 50);
  t.equal(got.task.status, 'open');
  t.equal(got.task.source, 'grafana');
  t.equal(got.task.dedupeKey, 'disk-db1');
  t.equal(got.events.filter((e: any) => e.kind === 'task.created').length, 1);
  t.equal(got.events.filter((e: any) => e.kind === 'task.deduped').length, 49);
  t.same(
    got.events.filter((e: any) => e.kind === 'task.deduped').map((e: any) => e.data.occurrences),
    range(50).slice(1),
  );
  const tasks = (await observers[0]!.call('task/list', {})).tasks;
  t.equal(tasks.length, 1, 'the relay holds one task');

  // Announced once: the 49 duplicates are not re-announced.
  await oncall.rpc.until(() => oncall.rpc.messages().length >= 1, 3000, 'announcement');
  const listed = await oncall.rpc.call('message/list', {});
  t.equal(listed.messages.length, 1, 'the target got one claimable message');
  t.equal(listed.messages[0].taskId, id);
  t.equal(oncall.rpc.messages().length, 1);
});

t.test('50 creates fired concurrently over one connection dedupe the same way', async (t) => {
  const relay = await startRelay(t);
  await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const ci = await connectAgent(t, relay.wsUrl, { id: 'ci-bot' });
  const results = await Promise.all(range(50).map(() => ci.rpc.call('task/create', { title: 'nightly failed', target: 'oncall', dedupeKey: 'nightly' })));
  t.equal(results.filter((r) => r.created).length, 1);
  t.equal(new Set(results.map((r) => r.task.id)).size, 1);
  t.same(
    results.map((r) => r.task.occurrences).sort((a, b) => a - b),
    range(50),
  );
  const got = await ci.rpc.call('task/get', { id: results[0].task.id });
  t.equal(got.task.occurrences, 50);
  t.equal(got.task.source, 'ci-bot', 'the source defaults to the creating agent');
});

t.test('the same dedupeKey from a different source is a different task', async (t) => {
  const relay = await startRelay(t);
  await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const base = { title: 'latency high', target: 'oncall', dedupeKey: 'latency' };
  const a = await observer.call('task/create', { ...base, source: 'grafana' });
  const b = await observer.call('task/create', { ...base, source: 'pagerduty' });
  const c = await observer.call('task/create', { ...base, from: 'ext:datadog' });
  const a2 = await observer.call('task/create', { ...base, source: 'grafana' });
  t.equal(a.created, true);
  t.equal(b.created, true, 'another source makes its own task');
  t.equal(c.created, true, 'an observer name is a source of its own');
  t.equal(c.task.source, 'ext:datadog');
  t.equal(a2.created, false);
  t.equal(new Set([a.task.id, b.task.id, c.task.id]).size, 3);
  t.equal(a2.task.id, a.task.id);
  t.equal(a2.task.occurrences, 2);
  t.equal((await observer.call('task/get', { id: b.task.id })).task.occurrences, 1, 'the other source was not bumped');
  const other = await observer.call('task/create', { ...base, dedupeKey: 'latency-eu', source: 'grafana' });
  t.equal(other.created, true, 'another key from the same source is another task');
});

t.test('once the task is done the same dedupeKey creates a new task', async (t) => {
  const relay = await startRelay(t);
  const oncall = await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const params = { title: 'cert expiring', target: 'oncall', dedupeKey: 'cert', source: 'monitor' };
  const first = await observer.call('task/create', params);
  const again = await observer.call('task/create', params);
  t.equal(again.created, false);
  const { claimToken } = await oncall.rpc.call('task/claim', { id: first.task.id });
  const dupWhileClaimed = await observer.call('task/create', params);
  t.equal(dupWhileClaimed.created, false, 'a claimed task still dedupes');
  t.equal(dupWhileClaimed.task.occurrences, 3);
  t.equal(dupWhileClaimed.task.claimedBy, 'oncall');
  await oncall.rpc.call('task/update', { id: first.task.id, claimToken, status: 'done' });

  const next = await observer.call('task/create', params);
  t.equal(next.created, true, 'a done task no longer dedupes');
  t.not(next.task.id, first.task.id);
  t.equal(next.task.occurrences, 1);
  t.equal(next.task.status, 'open');
  const old = await observer.call('task/get', { id: first.task.id });
  t.equal(old.task.status, 'done');
  t.equal(old.task.occurrences, 3, 'the closed task is left alone');
  const dup = await observer.call('task/create', params);
  t.equal(dup.task.id, next.task.id, 'further creates dedupe onto the new task');
  t.equal(dup.task.occurrences, 2);
});

t.test('action resolve closes the open task as done', async (t) => {
  const relay = await startRelay(t);
  const oncall = await connectAgent(t, relay.wsUrl, { id: 'oncall' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const params = { title: 'api 500s', target: 'oncall', dedupeKey: 'api-500', source: 'sentry' };
  const open = await observer.call('task/create', params);
  const resolved = await observer.call('task/create', { ...params, action: 'resolve' });
  t.equal(resolved.created, false);
  t.equal(resolved.task.id, open.task.id);
  t.equal(resolved.task.status, 'done');
  t.equal(resolved.task.progress, 100);
  t.type(resolved.task.closedAt, 'number');
  const got = await observer.call('task/get', { id: open.task.id });
  t.same(
    got.events.map((e: any) => e.kind),
    ['task.created', 'task.closed'],
  );
  t.equal(got.events[1].data.status, 'done');
  t.equal(got.events[1].agentId, null, 'nobody held it');
  const closed = (await observer.call('event/list', { kind: 'task.closed' })).events;
  t.equal(closed.length, 1);
  t.equal(closed[0].taskId, open.task.id);

  // A claimed task resolves too; the event names the owner it was taken from.
  const second = await observer.call('task/create', params);
  t.equal(second.created, true, 'after resolve the key is free again');
  const { claimToken } = await oncall.rpc.call('task/claim', { id: second.task.id });
  const r2 = await observer.call('task/create', { ...params, action: 'resolve' });
  t.equal(r2.task.id, second.task.id);
  t.equal(r2.task.status, 'done');
  const ev = (await observer.call('event/list', { kind: 'task.closed', taskId: second.task.id })).events;
  t.equal(ev.length, 1);
  t.equal(ev[0].agentId, 'oncall');
  t.equal(ev[0].data.status, 'done');
  const late = await rpcErrorOf(oncall.rpc.call('task/update', { id: second.task.id, claimToken, progress: 80 }));
  t.equal(late.code, -32003, 'the owner of a resolved task cannot update it');

  const none = await rpcErrorOf(observer.call('task/create', { ...params, action: 'resolve' }));
  t.equal(none.code, -32002, 'resolving with no open task is not found');
  const otherSource = await observer.call('task/create', { ...params, source: 'other' });
  t.equal(otherSource.created, true);
  t.equal((await rpcErrorOf(observer.call('task/create', { ...params, action: 'resolve' }))).code, -32002, 'resolve only matches its own source');
  t.equal((await observer.call('task/get', { id: otherSource.task.id })).task.status, 'open', 'the other source task is untouched');
  const noKey = await rpcErrorOf(observer.call('task/create', { title: 'x', target: 'oncall', source: 'sentry', action: 'resolve' }));
  t.equal(noKey.code, -32602, 'resolve needs a dedupeKey');
  t.match(noKey.message, /dedupeKey/);
  t.equal((await observer.call('task/list', {})).tasks.length, 3, 'failed resolves created nothing');
});

t.test('every new open task is announced to its target as a claimable message with taskId', async (t) => {
  const relay = await startRelay(t);
  const ops1 = await connectAgent(t, relay.wsUrl, { id: 'ops1', tags: ['ops'] });
  const ops2 = await connectAgent(t, relay.wsUrl, { id: 'ops2', tags: ['ops'] });
  const dev = await connectAgent(t, relay.wsUrl, { id: 'dev', tags: ['dev'] });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const { task, created } = await observer.call('task/create', { title: 'rotate keys', body: 'all of them', target: 'tag:ops', from: 'ext:sec' });
  t.equal(created, true);
  t.type(task.messageId, 'number', 'the task names its announcement');
  for (const a of [ops1, ops2]) {
    await a.rpc.until(() => a.rpc.messages().length === 1, 3000, `announcement to ${a.id}`);
    const m = a.rpc.messages()[0]!;
    t.equal(m.id, task.messageId);
    t.equal(m.taskId, task.id);
    t.equal(m.claimable, true);
    t.equal(m.from, 'ext:sec');
    t.equal(m.to, 'tag:ops');
    t.equal(m.subject, 'rotate keys');
    t.equal(m.body, 'all of them');
  }
  const msg = await observer.call('message/get', { id: task.messageId });
  t.same(msg.deliveries.map((d: any) => d.agentId).sort(), ['ops1', 'ops2'], 'only the target was reached');
  await dev.rpc.call('agent/list', {});
  t.equal(dev.rpc.messages().length, 0);

  // An agent-created task is announced from that agent, and claiming by message works.
  const byAgent = await dev.rpc.call('task/create', { title: 'deploy', target: 'ops2', dedupeKey: 'deploy-1' });
  await ops2.rpc.until(() => ops2.rpc.messages().length === 2, 3000, 'second announcement');
  const m2 = ops2.rpc.messages()[1]!;
  t.equal(m2.taskId, byAgent.task.id);
  t.equal(m2.from, 'dev');
  t.equal(m2.claimable, true);
  const claimed = await ops2.rpc.call('message/claim', { id: m2.id });
  t.equal(claimed.task.claimedBy, 'ops2');
  t.equal(claimed.claimToken, 1);
});
