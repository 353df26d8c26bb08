import type { Message } from '../../protocol/common.js';
import type { CodexTurn } from './thread.js';

/**
 * The delivery pipeline of the Codex bridge as one state and one transition function.
 *
 * What bridge.ts kept as loose flags and timers, and the rules between them, are now these
 * fields (deliverer.ts does the requests and holds the timer handle; this module decides):
 *
 *   thread    detached | idle | busy(turnId)   was conn === null, busy, activeTurnId.
 *             detached: no socket, nothing is sent. busy.turnId is null until turn/started
 *             names the turn (or a status/read says "active"): no steer without it.
 *   delivery  Delivery | null                  was inFlight (+ started, done).
 *             The turn we started and have not seen end. It survives a socket drop (recovery
 *             settles it) and is ONE object for its life: async steps hold it, and a copy left
 *             behind was answered twice. `done` makes the answer happen once.
 *   gate      open | sending | recovering      was delivering, recovering.
 *             sending: one turn/start or turn/steer at a time. recovering: after an attach
 *             nothing is delivered or reconciled until the previous turn is settled.
 *   wake      null | coalesce | retry          was coalesceTimer, retryTimer (never both).
 *             The one timer that will look at the queue again.
 *   ended     turn id | null                   the last turn whose end was handled (its
 *             turn/completed, or a reconcile that answered it). 0.171 sends the idle status
 *             first; a reconcile can answer before turn/completed comes, and that late
 *             turn/completed then answered the NEXT delivery (not started yet) with the old text.
 *
 * Not here: `stopped` and `ready` (the bridge's own lifecycle and its relay readiness), the
 * message queue (data, not state), approvals (approval-desk.ts).
 *
 * A turn/start is never sent while the thread is busy or a delivery is in flight: the server
 * would answer with a phantom turn id (the turn folds into the running one). With `steer`, the
 * queue goes into the running turn instead (turn/steer needs its id).
 */

/** A turn carrying relay messages, from turn/start until its answer is sent. */
export interface Delivery {
  messages: Message[];
  marker: string;
  turnId: string | null;
  /** turn/started was seen for turnId (a phantom id never starts). */
  started: boolean;
  /** The turn ended (its turn/completed can beat the turn/start answer). */
  done?: boolean;
}

export type ThreadState = { kind: 'detached' } | { kind: 'idle' } | { kind: 'busy'; turnId: string | null };

export interface Pipeline {
  thread: ThreadState;
  delivery: Delivery | null;
  gate: 'open' | 'sending' | 'recovering';
  wake: 'coalesce' | 'retry' | null;
  ended: string | null;
}

export type PipelineEvent =
  /** A socket attached to the thread; recovery of the previous turn begins. */
  | { type: 'attached'; active: boolean }
  | { type: 'recovered' }
  | { type: 'detached' }
  | { type: 'turnStarted'; turnId: string | null }
  | { type: 'turnEnded'; turn: CodexTurn }
  | { type: 'statusChanged'; active: boolean }
  /** thread/read told the status (a reconcile, or the look before turn/start). */
  | { type: 'statusRead'; active: boolean }
  /** Recovery found the delivery's turn in the thread (still running, or ended). */
  | { type: 'adopted'; delivery: Delivery; turnId: string; running: boolean }
  | { type: 'sendBegan' }
  | { type: 'sendEnded' }
  /** turn/start was sent (or a steer adopted a running turn): this is the turn in flight. */
  | { type: 'inFlight'; delivery: Delivery }
  /**
   * turn/start answered with this turn id: the thread is busy with it unless it already ended.
   * Its turn/started may have come first (while the id was unknown): then it has started.
   */
  | { type: 'started'; delivery: Delivery; turnId: string }
  /** The delivery never reached the thread (refused, or recovery did not find it). */
  | { type: 'dropped' }
  /** The delivery's turn ended and its answer is on the way. */
  | { type: 'settled'; delivery: Delivery }
  | { type: 'armed'; wake: 'coalesce' | 'retry' }
  | { type: 'woke' };

export type Effect =
  /** The turn of this delivery ended: send its answer back. */
  | { kind: 'answer'; delivery: Delivery; turn: CodexTurn }
  /** Read the thread: a status change may have ended a turn whose turn/completed is missing. */
  | { kind: 'reconcile' };

export function initialPipeline(): Pipeline {
  return { thread: { kind: 'detached' }, delivery: null, gate: 'open', wake: null, ended: null };
}

const IDLE: ThreadState = { kind: 'idle' };

/** A status says busy or idle; a busy thread keeps the turn id it already knows. */
function withActivity(thread: ThreadState, active: boolean): ThreadState {
  if (thread.kind === 'detached') return thread; // the attach sets it from the thread it gets
  if (!active) return IDLE;
  return thread.kind === 'busy' ? thread : { kind: 'busy', turnId: null };
}

export function step(s: Pipeline, e: PipelineEvent): { state: Pipeline; effects: Effect[] } {
  const d = s.delivery;
  switch (e.type) {
    case 'attached':
      return done({ ...s, thread: e.active ? { kind: 'busy', turnId: null } : IDLE, gate: 'recovering' });
    case 'recovered':
      return done({ ...s, gate: s.gate === 'recovering' ? 'open' : s.gate });
    case 'detached':
      return done({ ...s, thread: { kind: 'detached' } });
    case 'turnStarted':
      if (d && d.turnId === e.turnId) d.started = true;
      return done({ ...s, thread: s.thread.kind === 'detached' ? s.thread : { kind: 'busy', turnId: e.turnId } });
    case 'turnEnded': {
      if (e.turn.id === s.ended) return done(s); // handled already: a late repeat changes nothing
      const thread = s.thread.kind === 'detached' ? s.thread : IDLE;
      // Ours, or the running turn that absorbed ours (turn/start while busy answers a phantom id).
      const ours = d && (d.turnId === e.turn.id || !d.started);
      return { state: { ...s, thread, ended: e.turn.id }, effects: ours ? [{ kind: 'answer', delivery: d, turn: e.turn }] : [] };
    }
    case 'statusChanged':
      return { state: { ...s, thread: withActivity(s.thread, e.active) }, effects: e.active ? [] : [{ kind: 'reconcile' }] };
    case 'statusRead':
      return done({ ...s, thread: withActivity(s.thread, e.active) });
    case 'adopted':
      e.delivery.turnId = e.turnId;
      e.delivery.started = true;
      // `running` is from the read recovery made; the turn may have ended since (done).
      if (!e.running || e.delivery.done || s.thread.kind === 'detached') return done(s);
      return done({ ...s, thread: { kind: 'busy', turnId: e.turnId } });
    case 'sendBegan':
      return done({ ...s, gate: 'sending' });
    case 'sendEnded':
      return done({ ...s, gate: s.gate === 'sending' ? 'open' : s.gate });
    case 'inFlight':
      return done({ ...s, delivery: e.delivery });
    case 'started': {
      e.delivery.turnId = e.turnId;
      const seen = (s.thread.kind === 'busy' && s.thread.turnId === e.turnId) || s.ended === e.turnId;
      if (seen) e.delivery.started = true;
      if (e.delivery.done || s.thread.kind === 'detached') return done(s);
      return done({ ...s, thread: { kind: 'busy', turnId: e.turnId } });
    }
    case 'dropped':
      return done({ ...s, delivery: null });
    case 'settled':
      e.delivery.done = true;
      // Only the delivery it was handed: a newer one may be in flight by now.
      return done({ ...(d === e.delivery ? { ...s, delivery: null } : s), ended: e.delivery.turnId ?? s.ended });
    case 'armed':
      return done({ ...s, wake: e.wake });
    case 'woke':
      return done({ ...s, wake: null });
  }
}

function done(state: Pipeline): { state: Pipeline; effects: Effect[] } {
  return { state, effects: [] };
}

/** Whether to arm the coalesce window now (everything that arrives within it goes in one turn). */
export function mayArm(s: Pipeline, queued: number, steer: boolean): boolean {
  if (queued === 0 || s.wake !== null || s.gate !== 'open' || s.thread.kind === 'detached') return false;
  // Steer needs the running turn's id: armed before turn/started names it, the window ended in
  // 'wait' and re-armed, in a loop, for as long as the turn ran.
  if (steer && s.thread.kind === 'busy' && s.thread.turnId) return true;
  return s.thread.kind === 'idle' && !s.delivery; // otherwise flushed when the turn ends (or is named)
}

/** What the coalesce window ends in: a new turn, a steer of the running one, or waiting. */
export function sendPlan(s: Pipeline, steer: boolean): { kind: 'start' } | { kind: 'steer'; turnId: string } | { kind: 'wait' } {
  const occupied = s.thread.kind === 'busy' || s.delivery !== null;
  if (occupied && steer && s.thread.kind === 'busy' && s.thread.turnId) return { kind: 'steer', turnId: s.thread.turnId };
  return occupied ? { kind: 'wait' } : { kind: 'start' };
}

/**
 * What recovery does with the delivery's turn, found in the thread after a (re)attach: adopt it
 * (still running), answer it (ended), or deliver its messages again in a new turn. The last only
 * when the app-server died under the turn (0.171 keeps it `interrupted` with no `completedAt`),
 * it gave no answer, and its messages were not re-delivered before: once per message, so an
 * app-server that dies on every try cannot loop. A person's interrupt sets completedAt: answered.
 */
/**
 * `interrupted` with no `completedAt` on a live connection is a turn not settled yet: after a model
 * error 0.171 reports the thread `systemError` and lists the turn so before turn/completed brings
 * `failed` with the reason (seen once in a CI run). Only turn/completed, or recovery after a
 * reattach (the app-server died: recoveryVerdict), answers it.
 */
function settling(turn: CodexTurn): boolean {
  return turn.status === 'interrupted' && turn.completedAt == null;
}

export function recoveryVerdict(turn: CodexTurn, hasAnswer: boolean, redeliveredBefore: boolean): 'running' | 'ended' | 'redeliver' {
  if (!turn.status || turn.status === 'inProgress') return 'running';
  const cutOff = turn.status === 'interrupted' && turn.completedAt == null && !hasAnswer;
  return cutOff && !redeliveredBefore ? 'redeliver' : 'ended';
}

/**
 * The delivery as a read began. A read that began before a turn/start was answered cannot tell
 * that turn apart from a phantom (it is simply not in the list yet) nor its thread from an idle one.
 */
export interface ReadSnapshot {
  delivery: Delivery | null;
  turnId: string | null;
}

export function snapshot(s: Pipeline): ReadSnapshot {
  return { delivery: s.delivery, turnId: s.delivery?.turnId ?? null };
}

/**
 * What a reconcile read says about the delivery (`stale`: the delivery changed while it was read,
 * so the read says nothing): its turn ended (answer it with that turn), or
 * its id is a phantom that never ran (it folded into a turn already answered), or nothing yet.
 */
export function reconcileVerdict(d: Delivery | null, active: boolean, turns: CodexTurn[], asOf: ReadSnapshot): { kind: 'ended'; turn: CodexTurn } | { kind: 'phantom' } | { kind: 'stale' } | null {
  if (d !== asOf.delivery || (d && d.turnId !== asOf.turnId)) return { kind: 'stale' };
  if (active || !d?.turnId) return null;
  const turn = turns.find((t) => t.id === d.turnId);
  if (turn && turn.status !== 'inProgress' && !settling(turn)) return { kind: 'ended', turn };
  if (!turn && !d.started) return { kind: 'phantom' };
  return null;
}
