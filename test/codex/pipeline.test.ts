import t from 'tap';
import { initialPipeline, mayArm, reconcileVerdict, sendPlan, step, type Delivery, type Pipeline, type PipelineEvent } from '../../adapters/codex/pipeline.js';

// The transition function alone, without sockets: the rules bridge.ts relies on.

function run(events: PipelineEvent[], from: Pipeline = initialPipeline()): Pipeline {
  return events.reduce((s, e) => step(s, e).state, from);
}
const delivery = (turnId: string | null = null): Delivery => ({ messages: [], marker: 'relay#1', turnId, started: false });

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
  t.same(ended.effects.map((e) => e.kind), ['answer']);
  t.same(step(s, { type: 'turnEnded', turn: { id: 'OTHER' } }).effects, [], 'a started delivery is not answered by another turn');
  const phantom = run([{ type: 'attached', active: true }, { type: 'recovered' }, { type: 'inFlight', delivery: delivery('PHANTOM') }]);
  t.same(step(phantom, { type: 'turnEnded', turn: { id: 'RUNNING' } }).effects.map((e) => e.kind), ['answer']);
});

t.test('settled clears only the delivery it was handed', async (t) => {
  const older = delivery('T1');
  const newer = delivery('T2');
  const s = run([{ type: 'inFlight', delivery: newer }, { type: 'settled', delivery: older }]);
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
  t.same(reconcileVerdict(d, false, [{ id: 'T1', status: 'failed' }]), { kind: 'ended', turn: { id: 'T1', status: 'failed' } });
  t.equal(reconcileVerdict(d, false, [{ id: 'T1', status: 'inProgress' }]), null);
  t.equal(reconcileVerdict(d, true, [{ id: 'T1', status: 'completed' }]), null, 'an active thread is not reconciled');
  t.same(reconcileVerdict(d, false, []), { kind: 'phantom' });
  t.equal(reconcileVerdict({ ...d, started: true }, false, []), null, 'a started turn missing from the read is not a phantom');
  t.equal(reconcileVerdict(delivery(null), false, []), null, 'turn/start not answered yet');
});
