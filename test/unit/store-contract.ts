import type { Test } from 'tap';
import { newMessage, storedAgent } from '../helpers/records.js';
import type { NewMessage, Outcome, RelayStore, SearchFilter, StoredAgent, TaskCreateInput, WriteOp } from '../../broker/domain/store-port.js';

/**
 * The store contract: what the domain relies on from any store behind the port (broker/domain/
 * store-port.ts). A store passes when every case here holds on a fresh, empty store from `open`.
 * Run on SQLite by sqlite-store.test.ts; a second store runs the same function.
 */
export function storeContract(t: Test, open: (t: Test) => Promise<RelayStore>): void {
  const at = 1_000_000;
  const msg = (over: Partial<NewMessage> = {}): NewMessage => newMessage({ createdAt: at, ...over });
  const send = (over: Partial<NewMessage> = {}, recipients = ['bob']): WriteOp => ({ op: 'message.send', at, message: msg(over), recipients, task: null });
  const input = (over: Partial<TaskCreateInput> = {}): TaskCreateInput => ({ title: 'build', target: 'tag:ci', body: null, channel: null, dedupeKey: null, callbackUrl: null, meta: {}, ...over });
  const create = (over: Partial<TaskCreateInput> = {}, action: 'trigger' | 'resolve' = 'trigger', receipt: { integration: string; deliveryId: string } | null = null): WriteOp => ({
    op: 'task.create',
    at,
    from: 'ext:ci',
    source: 'ci',
    input: input(over),
    action,
    announce: { from: 'ext:ci', recipients: ['bob'] },
    receipt,
  });
  const agent = (id: string, over: Partial<StoredAgent> = {}): Omit<StoredAgent, 'inboxFloor'> => {
    const { inboxFloor: _floor, ...a } = storedAgent(id, { registeredAt: at, lastSeenAt: at, ...over });
    return a;
  };
  const one = async (store: RelayStore, op: WriteOp): Promise<Outcome> => (await store.apply([op]))[0]!;
  const value = <T>(o: Outcome): T => {
    if (!o.ok) throw new Error(`expected ok, got ${o.refused}`);
    return o.value as T;
  };

  t.test('message.send: ids ascend within and across batches; a reply joins its thread', async (t) => {
    const store = await open(t);
    const [a, b] = await store.apply([send(), send({ body: 'two' })]);
    const first = value<{ message: { id: number; threadId: number } }>(a!).message;
    const second = value<{ message: { id: number } }>(b!).message;
    t.ok(second.id > first.id, 'ids ascend in a batch');
    t.equal(first.threadId, first.id, 'a message starts its own thread');
    const reply = value<{ message: { id: number; threadId: number } }>(await one(store, send({ replyTo: first.id }))).message;
    t.ok(reply.id > second.id, 'and across batches');
    t.equal(reply.threadId, first.id, 'a reply joins its parent’s thread');
    t.equal(await store.messages.maxId(), reply.id);
    t.same(
      (await store.messages.thread(first.id, 0, 10)).map((m) => m.id),
      [first.id, reply.id],
    );
    t.same(
      (await store.messages.inbox('bob', { since: 0, limit: 10, channel: null, threadId: null, floor: 0, unread: false })).map((m) => m.id),
      [first.id, second.id, reply.id],
      'the inbox holds what named bob',
    );
    t.same(await store.messages.inbox('carol', { since: 0, limit: 10, channel: null, threadId: null, floor: 0, unread: false }), [], 'and no one else');
  });

  t.test('message.send: a missing replyTo is refused and writes nothing; its neighbours commit', async (t) => {
    const store = await open(t);
    const [bad, good] = await store.apply([send({ replyTo: 999 }), send()]);
    t.match(bad, { ok: false, refused: 'replyToMissing', changes: [] });
    t.equal(good!.ok, true, 'the next op of the batch still commits');
    t.equal((await store.messages.all({ since: 0, limit: 10, channel: null, threadId: null })).length, 1);
  });

  t.test('message.send with a task: the task first, then its message, linked both ways', async (t) => {
    const store = await open(t);
    const o = await one(store, { ...(send({ claimable: true }) as Extract<WriteOp, { op: 'message.send' }>), task: { ...input({ target: 'bob' }), source: 'alice' } });
    const { message, task } = value<{ message: { id: number; taskId: number }; task: { id: number; messageId: number } }>(o);
    t.equal(message.taskId, task.id);
    t.equal(task.messageId, message.id);
    t.same(
      o.changes.map((c) => c.kind),
      ['task', 'message'],
      'task.created, then the message',
    );
  });

  t.test('task.create: created and announced, deduped by source + key, resolved', async (t) => {
    const store = await open(t);
    const o = await one(store, create({ dedupeKey: 'k' }));
    const created = value<{ task: { id: number; messageId: number; status: string }; created: boolean }>(o);
    t.equal(created.created, true);
    t.equal(created.task.status, 'open');
    t.same(
      o.changes.map((c) => c.kind),
      ['task', 'message'],
      'the task event, then the announcement',
    );
    const announced = (await store.messages.get(created.task.messageId))!;
    t.match(announced, { claimable: true, taskId: created.task.id, from: 'ext:ci' });
    const again = value<{ task: { id: number; occurrences: number }; created: boolean }>(await one(store, create({ dedupeKey: 'k' })));
    t.match(again, { created: false, task: { id: created.task.id, occurrences: 2 } }, 'the same key dedupes');
    const resolved = value<{ task: { status: string; progress: number } }>(await one(store, create({ dedupeKey: 'k' }, 'resolve')));
    t.match(resolved.task, { status: 'done', progress: 100 });
    t.match(await one(store, create({ dedupeKey: 'k' }, 'resolve')), { ok: false, refused: 'noLiveTask' }, 'nothing live to resolve any more');
    t.same(
      (await store.events.ofTask(created.task.id)).map((e) => e.kind),
      ['task.created', 'task.deduped', 'task.closed'],
    );
  });

  t.test('task.create: an unroutable announcement creates nothing; a dedupe needs no route', async (t) => {
    const store = await open(t);
    value(await one(store, create({ dedupeKey: 'k' })));
    const unroutable = { ...(create({ dedupeKey: 'other' }) as Extract<WriteOp, { op: 'task.create' }>), announce: { unroutable: 'to: no agent with id x' } };
    t.match(await one(store, unroutable), { ok: false, refused: 'unroutable', message: /no agent/ });
    t.equal((await store.tasks.list({ status: null, target: null, channel: null, claimedBy: null, since: 0, limit: 10 })).length, 1, 'no task was created');
    t.equal(value<{ created: boolean }>(await one(store, { ...unroutable, input: input({ dedupeKey: 'k' }) })).created, false, 'the live task is deduped');
  });

  t.test('task.create with a receipt: a delivery id is applied once; a refused one may be retried', async (t) => {
    const store = await open(t);
    const receipt = { integration: 'ci', deliveryId: 'd1' };
    t.match(await one(store, create({ dedupeKey: 'k' }, 'resolve', receipt)), { ok: false, refused: 'noLiveTask' });
    t.equal(await store.receipts.seen('ci', 'd1'), undefined, 'the refused delivery was not recorded');
    const first = value<{ task: { id: number } }>(await one(store, create({ dedupeKey: 'k' }, 'trigger', receipt)));
    const [again, other] = await store.apply([create({ dedupeKey: 'k' }, 'trigger', receipt), create({ dedupeKey: 'k' }, 'trigger', { integration: 'ci', deliveryId: 'd2' })]);
    t.match(again, { ok: false, refused: 'duplicate', taskId: first.task.id });
    t.match(value<{ task: { occurrences: number } }>(other!).task, { occurrences: 2 }, 'another delivery id dedupes as usual');
  });

  t.test('task.claim: one winner; the loser hears who holds it; fencing tokens count attempts', async (t) => {
    const store = await open(t);
    const { task } = value<{ task: { id: number } }>(await one(store, create()));
    const [win, lose] = await store.apply([
      { op: 'task.claim', at, taskId: task.id, agentId: 'bob' },
      { op: 'task.claim', at, taskId: task.id, agentId: 'carol' },
    ]);
    t.match(value<{ task: { claimedBy: string; attempts: number; status: string } }>(win!).task, { claimedBy: 'bob', attempts: 1, status: 'claimed' });
    t.match(lose, { ok: false, refused: 'notOpen', task: { claimedBy: 'bob' } });
    t.match(await one(store, { op: 'task.claim', at, taskId: 999, agentId: 'bob' }), { ok: false, refused: 'notFound' });
  });

  t.test('task.transition and task.release apply only against the state they were planned on', async (t) => {
    const store = await open(t);
    const { task } = value<{ task: { id: number } }>(await one(store, create()));
    value(await one(store, { op: 'task.claim', at, taskId: task.id, agentId: 'bob' }));
    const guard = { status: 'claimed' as const, claimedBy: 'bob', attempts: 1 };
    const event = { kind: 'task.updated' as const, agentId: 'bob', data: { progress: 50 } };
    t.match(
      await one(store, { op: 'task.transition', at, taskId: task.id, guard: { ...guard, attempts: 2 }, status: 'in_progress', progress: 50, event }),
      { ok: false, refused: 'changed' },
      'a stale attempt is refused',
    );
    t.match(value<{ task: { status: string; progress: number } }>(await one(store, { op: 'task.transition', at, taskId: task.id, guard, status: 'in_progress', progress: 50, event })).task, {
      status: 'in_progress',
      progress: 50,
    });
    const release = { taskId: task.id, attempts: 1, reason: 'done for today', by: 'bob', announce: { from: 'ext:relay', recipients: ['carol'] } };
    t.match(await one(store, { op: 'task.release', at, guard, release }), { ok: false, refused: 'changed' }, 'planned on claimed, but it is in_progress now');
    const released = await one(store, { op: 'task.release', at, guard: { ...guard, status: 'in_progress' }, release });
    t.match(value<{ task: { status: string; claimedBy: null } }>(released).task, { status: 'open', claimedBy: null });
    t.same(
      released.changes.map((c) => c.kind),
      ['task', 'message'],
      'task.released, then the new offer',
    );
    t.match(released.changes[0], { kind: 'task', event: { kind: 'task.released', data: { previousOwner: 'bob' } }, alsoAgents: ['bob'] });
    t.match(released.changes[1], { kind: 'message', recipients: ['carol'] });
  });

  t.test('a task with a callback URL writes each event to the outbox, in the same commit', async (t) => {
    const store = await open(t);
    const o = await one(store, create({ callbackUrl: 'https://example.test/hook' }));
    const { task } = value<{ task: { id: number } }>(o);
    t.ok(
      o.changes.some((c) => c.kind === 'callback'),
      'the change says an outbox entry was written',
    );
    value(await one(store, { op: 'task.claim', at, taskId: task.id, agentId: 'bob' }));
    const entries = await store.outbox.ofTask(task.id);
    t.equal(entries.length, 2, 'task.created and task.claimed');
    t.same(
      entries.map((e) => JSON.parse(e.payload).type),
      ['task.created', 'task.claimed'],
    );
    t.same(
      (await store.outbox.due(at, 10)).map((e) => e.webhookId),
      [entries[0]!.webhookId],
      'one due per task, oldest first',
    );
    await store.apply([{ op: 'callback.attempt', at, id: entries[0]!.id, epoch: 0, state: 'delivered', nextAt: at, status: 200, error: null }]);
    t.same(
      (await store.outbox.due(at, 10)).map((e) => e.webhookId),
      [entries[1]!.webhookId],
      'then the next',
    );
  });

  t.test('callback.lease: each due entry to one dispatcher at a time, in task order; an attempt under a lease that passed on is refused', async (t) => {
    const store = await open(t);
    const first = value<{ task: { id: number } }>(await one(store, create({ callbackUrl: 'https://example.test/a' }))).task.id;
    value(await one(store, { op: 'task.claim', at, taskId: first, agentId: 'bob' }));
    const second = value<{ task: { id: number } }>(await one(store, create({ title: 'second', callbackUrl: 'https://example.test/b' }))).task.id;
    const [a1, a2] = await store.outbox.ofTask(first);
    const [b1] = await store.outbox.ofTask(second);
    const leased = async (when: number) =>
      value<{ entries: { id: number; leaseEpoch: number; nextAt: number }[] }>(await one(store, { op: 'callback.lease', at: when, limit: 10, leaseMs: 1000 })).entries;

    const taken = await leased(at);
    t.same(
      taken.map((e) => [e.id, e.leaseEpoch, e.nextAt]),
      [
        [a1!.id, 1, at + 1000],
        [b1!.id, 1, at + 1000],
      ],
      "the oldest pending entry of each task, its epoch raised, due again at the lease's end",
    );
    t.same(await leased(at), [], 'leased entries are not due to anyone else');
    t.same(await store.outbox.due(at, 10), [], 'nor read as due');

    value(await one(store, { op: 'callback.attempt', at, id: a1!.id, epoch: 1, state: 'delivered', nextAt: at, status: 200, error: null }));
    t.same(
      (await leased(at)).map((e) => e.id),
      [a2!.id],
      "recorded under its lease: the task's next entry is due",
    );

    const again = await leased(at + 1000);
    t.same(
      again.map((e) => [e.id, e.leaseEpoch]),
      [
        [a2!.id, 2],
        [b1!.id, 2],
      ],
      'a lease that ended (its dispatcher gone) is taken again, with a new epoch (due at the same time: by id)',
    );
    t.match(
      await one(store, { op: 'callback.attempt', at: at + 1001, id: b1!.id, epoch: 1, state: 'delivered', nextAt: at, status: 200, error: null }),
      { ok: false, refused: 'notLeased' },
      'the first dispatcher, back late, is refused',
    );
    t.match((await store.outbox.ofTask(second))[0], { state: 'pending', attempts: 0 }, 'and recorded nothing');
    value(await one(store, { op: 'callback.attempt', at: at + 1001, id: b1!.id, epoch: 2, state: 'delivered', nextAt: at, status: 200, error: null }));
    t.match((await store.outbox.ofTask(second))[0], { state: 'delivered', attempts: 1, leaseEpoch: 2 }, 'the one holding the lease records it');
  });

  t.test('sessions: a registration binds the agent to its node with the next epoch; a disconnect unbinds only that binding', async (t) => {
    const store = await open(t);
    const inserted = value<{ session: unknown }>(await one(store, { op: 'agent.insert', at, agent: agent('bob'), maxAgents: 10, events: [], bind: { node: 'n1' } }));
    t.same(inserted.session, { agentId: 'bob', node: 'n1', epoch: 1, at }, 'bound to n1, epoch 1');
    const unbound = value<{ session: unknown }>(await one(store, { op: 'agent.insert', at, agent: agent('carol'), maxAgents: 10, events: [] }));
    t.equal(unbound.session, null, 'a registration without a socket binds nothing');
    const expect = { tokenHash: agent('bob').tokenHash, status: 'online' as const };
    const moved = await one(store, { op: 'agent.patch', at: at + 1, id: 'bob', expect, patch: {}, events: [], bind: { node: 'n2' } });
    t.same(value<{ session: unknown }>(moved).session, { agentId: 'bob', node: 'n2', epoch: 2, at: at + 1 }, 'registered again on n2: epoch 2');
    t.same(
      moved.changes.filter((c) => c.kind === 'session'),
      [{ kind: 'session', session: { agentId: 'bob', node: 'n2', epoch: 2, at: at + 1 } }],
      'published as a session change',
    );
    t.match(await one(store, { op: 'session.unbind', at: at + 2, agentId: 'bob', node: 'n1', epoch: 1 }), { ok: false, refused: 'changed' }, "n1's old connection going away does not unbind n2's");
    const gone = await one(store, { op: 'session.unbind', at: at + 3, agentId: 'bob', node: 'n2', epoch: 2 });
    t.same(value<{ session: unknown }>(gone).session, { agentId: 'bob', node: null, epoch: 2, at: at + 3 }, "n2's connection gone: connected nowhere");
    t.same(await store.sessions.all(), [{ agentId: 'bob', node: null, epoch: 2, at: at + 3 }], 'read back');
  });

  t.test("sessions: an SSE stream's session.bind takes the next epoch on its node, as a registration does", async (t) => {
    const store = await open(t);
    value(await one(store, { op: 'agent.insert', at, agent: agent('bob'), maxAgents: 10, events: [], bind: { node: 'n1' } }));
    const bound = await one(store, { op: 'session.bind', at: at + 1, agentId: 'bob', node: 'n2' });
    t.same(value<{ session: unknown }>(bound).session, { agentId: 'bob', node: 'n2', epoch: 2, at: at + 1 }, 'bound to n2, epoch 2');
    t.same(bound.changes, [{ kind: 'session', session: { agentId: 'bob', node: 'n2', epoch: 2, at: at + 1 } }], 'published as a session change');
    t.match(await one(store, { op: 'session.unbind', at: at + 2, agentId: 'bob', node: 'n1', epoch: 1 }), { ok: false, refused: 'changed' }, "the registration's older binding no longer unbinds it");
    const first = value<{ session: unknown }>(await one(store, { op: 'session.bind', at: at + 3, agentId: 'dave', node: 'n1' }));
    t.same(first, { session: { agentId: 'dave', node: 'n1', epoch: 1, at: at + 3 } }, 'an agent never bound before starts at epoch 1');
    t.same(
      (await store.sessions.all()).sort((a, b) => a.agentId.localeCompare(b.agentId)),
      [
        { agentId: 'bob', node: 'n2', epoch: 2, at: at + 1 },
        { agentId: 'dave', node: 'n1', epoch: 1, at: at + 3 },
      ],
      'read back',
    );
  });

  t.test('agent.insert: a free id below the limit; its inbox floor is the newest message', async (t) => {
    const store = await open(t);
    value(await one(store, send()));
    const inserted = value<{ agent: StoredAgent; newestMessageId: number }>(
      await one(store, { op: 'agent.insert', at, agent: agent('bob'), maxAgents: 2, events: [{ kind: 'agent.online', agentId: 'bob', data: {} }] }),
    );
    t.equal(inserted.agent.inboxFloor, 1);
    t.equal(inserted.newestMessageId, 1);
    t.match(await one(store, { op: 'agent.insert', at, agent: agent('bob'), maxAgents: 5, events: [] }), { ok: false, refused: 'changed' }, 'the id is taken');
    value(await one(store, { op: 'agent.insert', at, agent: agent('carol'), maxAgents: 2, events: [] }));
    t.match(await one(store, { op: 'agent.insert', at, agent: agent('dave'), maxAgents: 2, events: [] }), { ok: false, refused: 'full', count: 2 });
    t.same((await store.agents.all()).map((a) => a.id).sort(), ['bob', 'carol']);
  });

  t.test('agent.patch: only while token and status are as planned; last-seen never goes back', async (t) => {
    const store = await open(t);
    value(await one(store, { op: 'agent.insert', at, agent: agent('bob'), maxAgents: 10, events: [] }));
    const expect = { tokenHash: 'h'.repeat(64), status: 'online' as const };
    t.match(await one(store, { op: 'agent.patch', at, id: 'bob', expect: { ...expect, tokenHash: 'x'.repeat(64) }, patch: { label: 'B' }, events: [] }), { ok: false, refused: 'changed' });
    t.match(await one(store, { op: 'agent.patch', at, id: 'nobody', expect, patch: {}, events: [] }), { ok: false, refused: 'notFound' });
    await store.apply([{ op: 'agent.touch', at: at + 500, ids: ['bob'] }]);
    const patched = value<{ agent: StoredAgent }>(await one(store, { op: 'agent.patch', at, id: 'bob', expect, patch: { label: 'B', tags: ['x'], lastSeenAt: at + 100 }, events: [] })).agent;
    t.match(patched, { label: 'B', tags: ['x'], lastSeenAt: at + 500, capabilities: [] }, 'patched fields only; last-seen kept the newer touch');
    t.same(await store.agents.get('bob'), patched, 'as stored');
  });

  t.test('agent.offline: releases exactly the claims it was planned with, else is refused', async (t) => {
    const store = await open(t);
    value(await one(store, { op: 'agent.insert', at, agent: agent('bob'), maxAgents: 10, events: [] }));
    const { task } = value<{ task: { id: number } }>(await one(store, create()));
    value(await one(store, { op: 'task.claim', at, taskId: task.id, agentId: 'bob' }));
    const release = { taskId: task.id, attempts: 1, reason: 'owner bob went offline', by: null, announce: { from: 'ext:relay', recipients: [] } };
    t.match(await one(store, { op: 'agent.offline', at, id: 'bob', patch: {}, reason: 'left', releases: [] }), { ok: false, refused: 'changed' }, 'planned without the claim');
    const o = await one(store, { op: 'agent.offline', at, id: 'bob', patch: {}, reason: 'left', releases: [release] });
    t.match(value<{ agent: StoredAgent }>(o).agent, { status: 'offline', offlineAt: at });
    t.same(
      o.changes.map((c) => c.kind),
      ['agent', 'event', 'task', 'message'],
    );
    t.match(await store.tasks.get(task.id), { status: 'open', claimedBy: null });
    t.match(await one(store, { op: 'agent.offline', at, id: 'bob', patch: {}, reason: 'left', releases: [] }), { ok: false, refused: 'changed' }, 'already offline');
  });

  t.test('delivery states: ack needs a delivery; read marks count what changed', async (t) => {
    const store = await open(t);
    const id = value<{ message: { id: number } }>(await one(store, send())).message.id;
    t.match(await one(store, { op: 'delivery.ack', at, agentId: 'carol', messageId: id, state: 'injected' }), { ok: false, refused: 'notDelivered' });
    t.match(value(await one(store, { op: 'delivery.ack', at, agentId: 'bob', messageId: id, state: 'injected' })), { delivery: { state: 'injected', agentId: 'bob' } });
    t.same(value(await one(store, { op: 'delivery.read', at, agentId: 'bob', ids: [id, id], upTo: null })), { marked: 1 });
    t.same(value(await one(store, { op: 'delivery.read', at, agentId: 'bob', ids: [id], upTo: null })), { marked: 0 }, 'already read');
    t.equal((await store.deliveries.get('bob', id))?.state, 'read');
    const span = value<{ rowId: number }>(await one(store, { op: 'delivery.span', at, agentId: 'bob', rowId: null, first: 1, last: 1 }));
    t.ok(span.rowId > 0, 'a pushed span gets a row');
  });

  t.test('lease.acquire: all or none in one batch; own leases never conflict; expired ones are ended first', async (t) => {
    const store = await open(t);
    const acquire = (agentId: string, resources: string[], mode: 'exclusive' | 'shared' = 'exclusive', when = at): WriteOp => ({
      op: 'lease.acquire',
      at: when,
      agentId,
      mode,
      resources,
      reason: `${agentId} works`,
      ttlMs: 1000,
      maxHeld: 3,
    });
    // Two conflicting acquires in one batch: the first wins, the second is refused against it.
    const [a, b, c] = await store.apply([acquire('alice', ['src/**']), acquire('bob', ['docs/**', 'src/x.ts']), acquire('alice', ['src/x.ts'])]);
    const lease = value<{ lease: { id: number; token: number } }>(a!).lease;
    t.match(b, { ok: false, refused: 'leaseConflict', conflicts: [{ lease: { id: lease.id, agentId: 'alice' }, held: 'src/**', requested: 'src/x.ts' }], changes: [] });
    t.ok(c!.ok, "an agent's own lease does not conflict");
    t.same(await store.leases.list({ now: at, since: 0, holder: 'bob' }), [], 'the refused acquire granted nothing (docs/** neither)');
    const shared = await store.apply([acquire('carol', ['lib/**'], 'shared'), acquire('dave', ['lib/a'], 'shared'), acquire('erin', ['lib/a'])]);
    t.same(
      shared.map((o) => o.ok),
      [true, true, false],
      'shared with shared coexist; exclusive against them is refused',
    );
    // At its expiry a lease is free: the acquire ends it first (its event), then grants.
    const late = await one(store, acquire('bob', ['src/x.ts'], 'exclusive', at + 1000));
    t.ok(late.ok, 'free once the TTL passed');
    const ends = late.changes.filter((ch) => ch.kind === 'lease' && ch.event.kind === 'lease.released');
    t.ok(ends.length >= 1, 'the expired leases were ended in the same op');
    t.match(ends[0], { kind: 'lease', lease: { id: lease.id, endedBy: 'expired' }, event: { data: { leaseId: lease.id, reason: 'expired' } } });
    t.ok(value<{ lease: { token: number } }>(late).lease.token > lease.token, 'tokens only rise');
    const full = await store.apply([
      acquire('frank', ['f/1'], 'exclusive', at + 1000),
      acquire('frank', ['f/2'], 'exclusive', at + 1000),
      acquire('frank', ['f/3'], 'exclusive', at + 1000),
      acquire('frank', ['f/4'], 'exclusive', at + 1000),
    ]);
    t.match(full.at(-1), { ok: false, refused: 'full', count: 3 }, 'past maxHeld leases in force: refused');
  });

  t.test('lease.renew and lease.release: only the holder with the newest token; lease.expire ends what is due', async (t) => {
    const store = await open(t);
    const got = value<{ lease: { id: number; token: number } }>(
      await one(store, { op: 'lease.acquire', at, agentId: 'alice', mode: 'exclusive', resources: ['db:migrations'], reason: null, ttlMs: 1000, maxHeld: 64 }),
    ).lease;
    const hold = { leaseId: got.id, agentId: 'alice', token: got.token };
    const renewed = value<{ lease: { token: number; expiresAt: number } }>(await one(store, { op: 'lease.renew', at: at + 500, hold, ttlMs: null })).lease;
    t.ok(renewed.token > got.token, 'a renewal takes a new token');
    t.equal(renewed.expiresAt, at + 1500, 'and keeps its own TTL from now');
    t.match(await one(store, { op: 'lease.renew', at: at + 600, hold, ttlMs: null }), { ok: false, refused: 'leaseNotHeld' }, 'the old token is stale');
    t.match(await one(store, { op: 'lease.release', at: at + 600, hold: { ...hold, agentId: 'bob', token: renewed.token } }), { ok: false, refused: 'leaseNotHeld' }, 'not the holder');
    t.match(await one(store, { op: 'lease.release', at, hold: { ...hold, leaseId: 999 } }), { ok: false, refused: 'notFound' });
    t.same(value(await one(store, { op: 'lease.expire', at: at + 1499 })), { leases: [] }, 'nothing due yet');
    t.same(
      (await store.leases.expired(at + 1500)).map((l) => l.id),
      [got.id],
    );
    const expired = value<{ leases: Array<{ id: number; endedBy: string }> }>(await one(store, { op: 'lease.expire', at: at + 1500 }));
    t.match(expired.leases, [{ id: got.id, endedBy: 'expired' }]);
    t.match(await one(store, { op: 'lease.release', at: at + 1600, hold: { ...hold, token: renewed.token } }), { ok: false, refused: 'leaseNotHeld', lease: { endedBy: 'expired' } });
  });

  t.test("agent.offline ends the agent's leases in the same op; an offline agent acquires none", async (t) => {
    const store = await open(t);
    value(await one(store, { op: 'agent.insert', at, agent: agent('alice'), maxAgents: 10, events: [] }));
    const lease = value<{ lease: { id: number } }>(
      await one(store, { op: 'lease.acquire', at, agentId: 'alice', mode: 'shared', resources: ['a/**'], reason: null, ttlMs: 60_000, maxHeld: 64 }),
    ).lease;
    const o = await one(store, { op: 'agent.offline', at: at + 1, id: 'alice', patch: {}, reason: 'stale', releases: [] });
    t.ok(o.ok);
    t.match(
      o.changes.filter((c) => c.kind === 'lease'),
      [{ lease: { id: lease.id, endedBy: 'offline', releasedAt: at + 1 }, event: { kind: 'lease.released', agentId: 'alice', data: { reason: 'offline' } } }],
    );
    t.same(await store.leases.list({ now: at + 1, since: 0, holder: null }), []);
    t.match(
      await one(store, { op: 'lease.acquire', at: at + 2, agentId: 'alice', mode: 'shared', resources: ['a/**'], reason: null, ttlMs: 60_000, maxHeld: 64 }),
      { ok: false, refused: 'holderOffline' },
      'an offline agent is granted nothing (nothing but its TTL would end it)',
    );
  });

  t.test('prune: old rows go, the cursor floor rises, pruned agents are announced', async (t) => {
    const store = await open(t);
    value(await one(store, send()));
    value(await one(store, { op: 'agent.insert', at, agent: agent('gone', { status: 'offline', offlineAt: at }), maxAgents: 10, events: [] }));
    const ended = value<{ lease: { id: number; token: number } }>(
      await one(store, { op: 'lease.acquire', at, agentId: 'alice', mode: 'exclusive', resources: ['a'], reason: null, ttlMs: 1000, maxHeld: 64 }),
    ).lease;
    value(await one(store, { op: 'lease.release', at, hold: { leaseId: ended.id, agentId: 'alice', token: ended.token } }));
    const held = value<{ lease: { id: number } }>(await one(store, { op: 'lease.acquire', at, agentId: 'alice', mode: 'exclusive', resources: ['b'], reason: null, ttlMs: 60_000, maxHeld: 64 })).lease;
    const o = await one(store, { op: 'prune', at: at + 10, cutoff: at + 1, offlineCutoff: at + 1 });
    t.match(value(o), { messages: 1, prunedThrough: 1, leases: 1, agents: ['gone'] }, 'a lease that ended before the cutoff is pruned');
    t.ok(await store.leases.get(held.id), 'one in force stays');
    t.notOk(await store.leases.get(ended.id));
    t.same(o.changes, [{ kind: 'agentRemoved', id: 'gone' }]);
    t.equal(await store.prunedThrough(), 1);
    const next = value<{ message: { id: number; threadId: number } }>(await one(store, send())).message;
    t.ok(next.id > 1, 'ids are never reused after a prune');
    t.equal(next.threadId, next.id, 'a message sent after the prune still roots its own thread');
    t.same(
      (await store.messages.all({ since: 0, limit: 10, channel: null, threadId: next.id })).map((m) => m.id),
      [next.id],
      'and is found by its thread id',
    );
  });

  t.test('search: ranked matches of every term, filtered, with snippets; a committed send is found, a pruned one is not', async (t) => {
    const store = await open(t);
    const sent = async (over: Partial<NewMessage>, recipients = ['bob']) => value<{ message: { id: number } }>(await one(store, send(over, recipients))).message.id;
    const twice = await sent({ body: 'disk full on disk two' });
    const once = await sent({ body: 'a disk alarm, and a very long body after it to push its rank below the others', channel: 'ops' });
    const subject = await sent({ subject: 'Disk', body: 'see above', from: 'ext:ci', to: 'tag:crew' }, ['bob', 'carol']);
    await sent({ body: 'nothing here' });
    const terms = (...words: string[]) => words.map((text) => ({ text, prefix: false }));
    const f: SearchFilter = { terms: terms('disk'), since: 0, channel: null, from: null, to: null, inbox: null, limit: 10 };
    const rank = async (over: Partial<SearchFilter>) => (await store.search.rank({ ...f, ...over })).map((r) => r.id);
    t.same(await rank({}), [subject, twice, once], 'best first: a subject word, then two body words, then one in a long body');
    t.same(await rank({ limit: 2 }), [subject, twice], 'limit');
    t.same(await rank({ terms: terms('disk', 'full') }), [twice], 'every term must match');
    t.same(await rank({ terms: [{ text: 'ala', prefix: true }] }), [once], 'a prefix');
    t.same(await rank({ terms: terms('two disk') }), [], 'a term of two words is a phrase, in order');
    t.same(await rank({ channel: 'ops' }), [once], 'channel');
    t.same(await rank({ from: 'ext:ci' }), [subject], 'from');
    t.same(await rank({ to: 'tag:crew' }), [subject], 'to');
    t.same(await rank({ since: twice }), [subject, once], 'since');
    t.same(await rank({ inbox: { agentId: 'carol', floor: 0 } }), [subject], 'an inbox: the messages addressed to it');
    t.same(await rank({ inbox: { agentId: 'bob', floor: once } }), [subject], 'from its floor up');
    t.same(
      (await store.search.hits(terms('disk'), [twice, 999, subject])).map((h) => [h.message.id, h.snippet]),
      [
        [twice, '«disk» full on «disk» two'],
        [subject, '«Disk»'],
      ],
      'hits in the order asked, matched words between « and », an unknown id left out',
    );
    value(await one(store, { op: 'prune', at: at + 10, cutoff: at + 1, offlineCutoff: 0 }));
    t.same(await rank({}), [], 'pruned messages are not found');
    const late = await sent({ body: 'disk replaced' });
    t.same(await rank({}), [late], 'a send is found once its commit is answered');
  });
}
