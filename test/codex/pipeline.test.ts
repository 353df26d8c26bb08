import t from 'tap';
import { initialPipeline, mayArm, reconcileVerdict, sendPlan, step, type Delivery, type Pipeline, type PipelineEvent } from '../../adapters/codex/pipeline.js';

// The transition function alone, without sockets: the rules bridge.ts relies on.

function run(events: PipelineEvent[], from: Pipeline = initialPipeline()): Pipeline {
  return events.reduce((s, e) => step(s, e).state, from);
}
const delivery = (turnId: string | null = null): Delivery => ({ messages: [], marker: 'relay#1', turnId, started: false });
/** A read that began with this delivery already in flight (not stale). */
const asOf = (d: Delivery | null) => ({ delivery: d, turnId: d?.turnId ?? null });

t.test('nothing is armed while detached, sending or recovering; an idle thread arms', async (t) => {
  t.notOk(mayArm(initialPipeline(), 1, false), 'detached');
  const attached = run([{ type: 'attached', active: false }]);
  t.notOk(mayArm(attached, 1, false), 'recovering');
  const idle = run([{ type: 'recovered' }], attached);
  t.ok(mayArm(idle, 1, false), 'idle, a message queued');
  t.notOk(mayArm(idle, 0, false), 'nothing queued');
  t.notOk(mayArm(run([{ type: 'sendBegan' }], idle), 1, false), 'sending');
  t.notOk(mayArm(run([{ type: 'armed', wake: 'retry' }], idle), 1, true), 'a wake already armed');
});

t.test('turn/start is never planned on a busy thread or with a delivery in flight', async (t) => {
  const idle = run([{ type: 'attached', active: false }, { type: 'recovered' }]);
  t.same(sendPlan(idle, false), { kind: 'start' });
  const busy = run([{ type: 'turnStarted', turnId: 'T1' }], idle);
  t.same(sendPlan(busy, false), { kind: 'wait' });
  t.notOk(mayArm(busy, 1, false), 'flushed when the turn ends');
  t.same(sendPlan(busy, true), { kind: 'steer', turnId: 'T1' }, 'steer needs the running turn id');
  t.same(sendPlan(run([{ type: 'statusChanged', active: true }], idle), true), { kind: 'wait' }, 'busy by status alone: no id to steer');
  t.same(sendPlan(run([{ type: 'inFlight', delivery: delivery() }], idle), false), { kind: 'wait' });
});

t.test('a turn end answers our delivery, or the running turn that absorbed a phantom id', async (t) => {
  const d = delivery('T1');
  const s = run([{ type: 'attached', active: false }, { type: 'recovered' }, { type: 'inFlight', delivery: d }, { type: 'turnStarted', turnId: 'T1' }]);
  t.ok(d.started);
  const ended = step(s, { type: 'turnEnded', turn: { id: 'T1', status: 'completed' } });
  t.equal(ended.state.thread.kind, 'idle');
  t.same(
    ended.effects.map((e) => e.kind),
    ['answer'],
  );
  t.same(step(s, { type: 'turnEnded', turn: { id: 'OTHER' } }).effects, [], 'a started delivery is not answered by another turn');
  const phantom = run([{ type: 'attached', active: true }, { type: 'recovered' }, { type: 'inFlight', delivery: delivery('PHANTOM') }]);
  t.same(
    step(phantom, { type: 'turnEnded', turn: { id: 'RUNNING' } }).effects.map((e) => e.kind),
    ['answer'],
  );
});

t.test('settled clears only the delivery it was handed', async (t) => {
  const older = delivery('T1');
  const newer = delivery('T2');
  const s = run([
    { type: 'inFlight', delivery: newer },
    { type: 'settled', delivery: older },
  ]);
  t.equal(s.delivery, newer);
  t.ok(older.done);
  t.equal(run([{ type: 'settled', delivery: newer }], s).delivery, null);
});

t.test('a status idle asks for a reconcile; the delivery survives a socket drop', async (t) => {
  const d = delivery('T1');
  const s = run([{ type: 'attached', active: true }, { type: 'recovered' }, { type: 'inFlight', delivery: d }]);
  t.same(step(s, { type: 'statusChanged', active: false }).effects, [{ kind: 'reconcile' }]);
  const dropped = run([{ type: 'detached' }], s);
  t.equal(dropped.thread.kind, 'detached');
  t.equal(dropped.delivery, d);
  t.equal(run([{ type: 'turnStarted', turnId: 'T9' }], dropped).thread.kind, 'detached', 'the attach decides the status');
});

t.test('reconcileVerdict: an ended turn, a phantom that never ran, or nothing yet', async (t) => {
  const d = delivery('T1');
  t.same(reconcileVerdict(d, false, [{ id: 'T1', status: 'failed' }], asOf(d)), { kind: 'ended', turn: { id: 'T1', status: 'failed' } });
  t.equal(reconcileVerdict(d, false, [{ id: 'T1', status: 'inProgress' }], asOf(d)), null);
  t.equal(reconcileVerdict(d, true, [{ id: 'T1', status: 'completed' }], asOf(d)), null, 'an active thread is not reconciled');
  t.same(reconcileVerdict(d, false, [], asOf(d)), { kind: 'phantom' });
  t.equal(
    reconcileVerdict(d, false, [{ id: 'T1', status: 'interrupted', completedAt: null }], asOf(d)),
    null,
    'interrupted with no completedAt is not settled yet (a model error before turn/completed brings failed)',
  );
  t.same(
    reconcileVerdict(d, false, [{ id: 'T1', status: 'interrupted', completedAt: 5 }], asOf(d)),
    { kind: 'ended', turn: { id: 'T1', status: 'interrupted', completedAt: 5 } },
    'a person interrupted it',
  );
  const running = { ...d, started: true };
  t.equal(reconcileVerdict(running, false, [], asOf(running)), null, 'a started turn missing from the read is not a phantom');
  const unanswered = delivery(null);
  t.equal(reconcileVerdict(unanswered, false, [], asOf(unanswered)), null, 'turn/start not answered yet');
});

t.test('a reconcile read that began before turn/start was answered is stale: no phantom, no idle', async (t) => {
  // The read of turn 1's idle status left before turn 2's turn/start was answered; the answer (and
  // turn 2's turn/started) came in the same chunk as the read's turns, so turn 2 is missing from
  // them. Taken as truth, turn 2 was a phantom: settled without a reply, its real end answered no one.
  const d = delivery(null);
  const idle = run([{ type: 'attached', active: false }, { type: 'recovered' }, { type: 'inFlight', delivery: d }]);
  const readBegan = asOf(d);
  const started = run(
    [
      { type: 'turnStarted', turnId: 'T2' },
      { type: 'started', delivery: d, turnId: 'T2' },
    ],
    idle,
  );
  t.equal(d.turnId, 'T2');
  t.same(reconcileVerdict(started.delivery, false, [{ id: 'T1', status: 'completed' }], readBegan), { kind: 'stale' });
  t.same(reconcileVerdict(null, false, [], readBegan), { kind: 'stale' }, 'the delivery settled meanwhile');
});

t.test('turn/started before the turn/start answer: the delivery has started (not a phantom candidate)', async (t) => {
  const d = delivery(null);
  const s = run([{ type: 'attached', active: false }, { type: 'recovered' }, { type: 'inFlight', delivery: d }, { type: 'turnStarted', turnId: 'T1' }]);
  t.notOk(d.started, 'the id was not known when turn/started came');
  const started = run([{ type: 'started', delivery: d, turnId: 'T1' }], s);
  t.ok(d.started, 'the answer names the turn that started');
  t.same(started.thread, { kind: 'busy', turnId: 'T1' });
  t.equal(reconcileVerdict(d, false, [], asOf(d)), null, 'a read missing it is not proof of a phantom');
  const late = delivery(null);
  run(
    [
      { type: 'inFlight', delivery: late },
      { type: 'started', delivery: late, turnId: 'T9' },
    ],
    s,
  );
  t.notOk(late.started, 'an id no turn/started named stays unstarted');
});

t.test('steer: no coalesce window while busy with no known turn id (it re-armed in a loop)', async (t) => {
  const idle = run([{ type: 'attached', active: false }, { type: 'recovered' }]);
  const busyUnknown = run([{ type: 'statusChanged', active: true }], idle);
  t.same(sendPlan(busyUnknown, true), { kind: 'wait' });
  t.notOk(mayArm(busyUnknown, 1, true), 'nothing to steer yet: armed only once turn/started names the turn');
  t.ok(mayArm(run([{ type: 'turnStarted', turnId: 'T1' }], busyUnknown), 1, true), 'the running turn is known: steer it');
  t.ok(mayArm(idle, 1, true), 'idle: a new turn');
  t.notOk(mayArm(run([{ type: 'inFlight', delivery: delivery() }], idle), 1, true), 'our turn/start not answered yet');
});

t.test('recovery: an adopted turn that already ended does not leave the thread busy', async (t) => {
  const d = delivery(null);
  const s = run([
    { type: 'attached', active: false },
    { type: 'inFlight', delivery: d },
  ]);
  // Its turn/completed arrived while recovery awaited the relay: answered, thread idle.
  const ended = step(s, { type: 'turnEnded', turn: { id: 'T1', status: 'completed' } });
  t.same(
    ended.effects.map((e) => e.kind),
    ['answer'],
  );
  const answered = run([{ type: 'settled', delivery: d }], ended.state);
  // The read recovery made before it said "running": stale now.
  const adopted = run([{ type: 'adopted', delivery: d, turnId: 'T1', running: true }], answered);
  t.equal(adopted.thread.kind, 'idle', 'not busy with a turn that ended');
  t.equal(run([{ type: 'adopted', delivery: delivery(), turnId: 'T2', running: true }], s).thread.kind, 'busy', 'a running turn is');
});

t.test('0.171 order: status idle before turn/completed answers once, with the turn', async (t) => {
  const d = delivery('T1');
  const s = run([{ type: 'attached', active: false }, { type: 'recovered' }, { type: 'inFlight', delivery: d }, { type: 'turnStarted', turnId: 'T1' }]);
  const idle = step(s, { type: 'statusChanged', active: false });
  t.same(idle.effects, [{ kind: 'reconcile' }], 'a reconcile, in case turn/completed is missing');
  t.equal(idle.state.thread.kind, 'idle');
  t.equal(reconcileVerdict(d, false, [{ id: 'T1', status: 'inProgress' }], asOf(d)), null, 'a read still showing the turn running answers nothing');
  const ended = step(idle.state, { type: 'turnEnded', turn: { id: 'T1', status: 'completed' } });
  t.same(
    ended.effects.map((e) => e.kind),
    ['answer'],
  );
  const after = run([{ type: 'settled', delivery: d }], ended.state);
  t.same(step(after, { type: 'turnEnded', turn: { id: 'T1', status: 'completed' } }).effects, [], 'a second look at the same end answers nothing');
  t.equal(reconcileVerdict(after.delivery, false, [{ id: 'T1', status: 'completed' }], asOf(after.delivery)), null, 'nor does the reconcile');
});

t.test('0.171 busy turn/start: the answer is the running turn id; its end answers the delivery once', async (t) => {
  const idle = run([{ type: 'attached', active: false }, { type: 'recovered' }]);
  // A person's turn started between our look and our turn/start; the answer names it.
  const d = delivery(null);
  const s = run(
    [
      { type: 'inFlight', delivery: d },
      { type: 'turnStarted', turnId: 'RUNNING' },
    ],
    idle,
  );
  const started = run([{ type: 'started', delivery: d, turnId: 'RUNNING' }], s);
  t.same(started.thread, { kind: 'busy', turnId: 'RUNNING' });
  const ended = step(started, { type: 'turnEnded', turn: { id: 'RUNNING', status: 'completed' } });
  t.same(
    ended.effects.map((e) => e.kind),
    ['answer'],
    'the running turn carried our text: its end is our answer',
  );
  t.same(
    reconcileVerdict(d, false, [{ id: 'RUNNING', status: 'completed' }], asOf(d)),
    { kind: 'ended', turn: { id: 'RUNNING', status: 'completed' } },
    'a reconcile finds it too (complete() answers once)',
  );
});

t.test('a late turn/completed of a turn a reconcile already answered answers nothing and idles nothing', async (t) => {
  const d1 = delivery('T1');
  const s = run([{ type: 'attached', active: false }, { type: 'recovered' }, { type: 'inFlight', delivery: d1 }, { type: 'turnStarted', turnId: 'T1' }, { type: 'statusChanged', active: false }]);
  const answered = run([{ type: 'settled', delivery: d1 }], s); // the reconcile found T1 ended
  const d2 = delivery(null);
  const next = run(
    [
      { type: 'inFlight', delivery: d2 },
      { type: 'started', delivery: d2, turnId: 'T2' },
    ],
    answered,
  );
  const late = step(next, { type: 'turnEnded', turn: { id: 'T1', status: 'completed' } });
  t.same(late.effects, [], 'the next delivery (not started yet) is not answered with turn 1');
  t.equal(late.state.thread.kind, 'busy', 'and its thread stays busy');
  t.same(
    step(next, { type: 'turnEnded', turn: { id: 'T2', status: 'completed' } }).effects.map((e) => e.kind),
    ['answer'],
    'its own end answers it',
  );
});
