import type { Change, OpName, Outcome, PruneCounts, Refusal, Results, WriteOp } from '../domain/store-port.js';
import { agentFromRow, eventFromRow, leaseFromRow, messageFromRow, outboxFromRow, sessionFromRow, taskFromRow } from './rows.js';

/*
 * relay_apply's outcomes (jsonb: row images, keys in jsonb's order) to the port's Outcome objects,
 * built in the same shape and key order as the SQLite store's (broker/store/apply.ts).
 */

type Raw = Record<string, unknown>;
type Rows = Raw[];

/** A batch as relay_apply answers it: its ops' outcomes, and its position in the change feed (null: it changed nothing). */
export interface RawBatch {
  outcomes: unknown[];
  position: number | null;
}

/** One change as relay_apply logs and answers it (a row image inside) to the port's Change. */
export function changeFromRaw(c: Raw): Change {
  switch (c.kind) {
    case 'message':
      return { kind: 'message', message: messageFromRow(c.message as Raw), recipients: c.recipients as string[] };
    case 'task':
      return { kind: 'task', task: taskFromRow(c.task as Raw), event: eventFromRow(c.event as Raw), alsoAgents: c.alsoAgents as (string | null)[] };
    case 'event':
      return { kind: 'event', event: eventFromRow(c.event as Raw) };
    case 'agent':
      return { kind: 'agent', agent: agentFromRow(c.agent as Raw) };
    case 'agentRemoved':
      return { kind: 'agentRemoved', id: c.id as string };
    case 'session':
      return { kind: 'session', session: sessionFromRow(c.session as Raw) };
    case 'lease':
      return { kind: 'lease', lease: leaseFromRow(c.lease as Raw), event: eventFromRow(c.event as Raw) };
    case 'callback':
      return { kind: 'callback' };
  }
  throw new Error(`relay_apply answered a change of unknown kind ${String(c.kind)}`);
}

function value(op: OpName, v: Raw | null, changes: readonly Change[]): unknown {
  switch (op) {
    case 'message.send':
      return { message: v!.message ? messageFromRow(v!.message as Raw) : sentMessage(changes), task: v!.task ? taskFromRow(v!.task as Raw) : null } satisfies Results['message.send'];
    case 'task.create':
      return { task: taskFromRow(v!.task as Raw), created: v!.created as boolean } satisfies Results['task.create'];
    case 'task.claim':
    case 'task.transition':
    case 'task.release':
      return { task: taskFromRow(v!.task as Raw) };
    case 'agent.insert':
    case 'agent.patch':
      return { agent: agentFromRow(v!.agent as Raw), newestMessageId: v!.newestMessageId as number, session: v!.session ? sessionFromRow(v!.session as Raw) : null };
    case 'session.bind':
    case 'session.unbind':
      return { session: sessionFromRow(v!.session as Raw) } satisfies Results['session.unbind'];
    case 'agent.offline':
      return { agent: agentFromRow(v!.agent as Raw) };
    case 'delivery.read':
      return { marked: v!.marked as number };
    case 'delivery.ack': {
      const d = v!.delivery as Raw;
      return { delivery: { messageId: d.messageId, agentId: d.agentId, state: d.state, at: d.at } } as Results['delivery.ack'];
    }
    case 'delivery.span':
      return { rowId: v!.rowId as number };
    case 'lease.acquire':
    case 'lease.renew':
    case 'lease.release':
      return { lease: leaseFromRow(v!.lease as Raw) };
    case 'lease.expire':
      return { leases: (v!.leases as Rows).map(leaseFromRow) };
    case 'prune': {
      const p = v as unknown as PruneCounts;
      return {
        messages: p.messages,
        prunedThrough: p.prunedThrough,
        events: p.events,
        tasks: p.tasks,
        callbacks: p.callbacks,
        receipts: p.receipts,
        leases: p.leases,
        agents: p.agents,
      } satisfies PruneCounts;
    }
    case 'callback.lease':
      return { entries: (v!.entries as Rows).map(outboxFromRow) } satisfies Results['callback.lease'];
    case 'agent.touch':
    case 'delivery.mark':
    case 'callback.attempt':
      return null;
  }
}

/** A plain send's message, which relay_send_rows answers once, in its change (0008_send_speed.sql): the same object, as the SQLite store answers it. */
function sentMessage(changes: readonly Change[]): Results['message.send']['message'] {
  const change = changes.find((c) => c.kind === 'message');
  if (!change) throw new Error('relay_apply answered a message.send with no message');
  return change.message;
}

function refusal(r: Raw): Refusal {
  switch (r.refused) {
    case 'notOpen':
      return { refused: 'notOpen', task: taskFromRow(r.task as Raw) };
    case 'duplicate':
      return { refused: 'duplicate', taskId: (r.taskId as number | null) ?? null };
    case 'unroutable':
      return { refused: 'unroutable', message: r.message as string };
    case 'full':
      return { refused: 'full', count: r.count as number };
    case 'staleRoute':
      return { refused: 'staleRoute', position: r.position as number };
    case 'leaseConflict':
      return {
        refused: 'leaseConflict',
        conflicts: (r.conflicts as Rows).map((c) => ({ lease: leaseFromRow(c.lease as Raw), held: c.held as string, requested: c.requested as string })),
      };
    case 'leaseNotHeld':
      return { refused: 'leaseNotHeld', lease: leaseFromRow(r.lease as Raw) };
    case 'error':
      return { refused: 'error', error: errorFromRaw(r.error) };
    default:
      return { refused: r.refused } as Refusal;
  }
}

/** An op's error as the fallback stored it ({message, code}) back as an Error. */
function errorFromRaw(e: unknown): Error {
  if (e instanceof Error) return e;
  const { message, code } = (e ?? {}) as { message?: string; code?: string };
  return Object.assign(new Error(message ?? 'the op failed'), code ? { code } : {});
}

/** One raw outcome of op `op`. */
export function outcomeFromRaw(op: WriteOp, raw: Raw): Outcome {
  const changes = ((raw.changes as Rows | undefined) ?? []).map(changeFromRaw);
  if (raw.ok === true) return { ok: true, value: value(op.op, raw.value as Raw | null, changes), changes } as Outcome;
  return { ok: false, ...refusal(raw), changes } as Outcome;
}

export function outcomesFromRaw(ops: readonly WriteOp[], raw: unknown): Outcome[] {
  const list = raw as Raw[];
  if (!Array.isArray(list) || list.length !== ops.length) throw new Error(`relay_apply answered ${Array.isArray(list) ? list.length : 'no'} outcomes for ${ops.length} ops`);
  return list.map((r, i) => outcomeFromRaw(ops[i]!, r));
}
