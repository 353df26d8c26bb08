import { changesRouting } from '../domain/routing.js';
import type { WriteOp } from '../domain/store-port.js';
import { searchVector } from './search-vector.js';

/*
 * A batch's ops as relay_apply reads them (0002_apply.sql and after). Three things are added to
 * the port's ops on the way:
 * - an op that changes routing (the domain's rule) is marked `reroutes` (0007_routing_rule.sql);
 * - consecutive plain sends (no task, no reply: nothing in the database to check first) go as one
 *   `message.run` op of flat rows, which the database reads in one pass and answers with one
 *   outcome per send (relay_send_rows, 0008_send_speed.sql);
 * - a plain send carries its message's search vector when the node can compute it exactly
 *   (search-vector.ts); without one, the database's trigger computes it.
 */

type SendOp = Extract<WriteOp, { op: 'message.send' }>;

export interface WireOptions {
  /** The database agreed on open that the node's search vectors are its own (search-vector.ts). */
  vectors: boolean;
  /** Group plain sends into runs; the op-by-op fallback sends every op alone. */
  runs: boolean;
}

function isPlainSend(op: WriteOp): op is SendOp {
  return op.op === 'message.send' && op.task === null && op.message.replyTo === null;
}

/** A plain send as a row of its run: what relay_send_rows reads. */
function sendRow(op: SendOp, vectors: boolean): object {
  const m = op.message;
  return {
    from: m.from,
    to: m.to,
    channel: m.channel,
    subject: m.subject,
    body: m.body,
    claimable: m.claimable,
    createdAt: m.createdAt,
    meta: m.meta,
    recipients: op.recipients,
    search: vectors ? searchVector(m.subject, m.body) : null,
    routedAt: op.routedAt ?? null,
  };
}

export function wireOps(ops: readonly WriteOp[], o: WireOptions): object[] {
  const out: object[] = [];
  let run: object[] | null = null;
  for (const op of ops) {
    if (o.runs && isPlainSend(op)) {
      if (!run) out.push({ op: 'message.run', rows: (run = []) });
      run.push(sendRow(op, o.vectors));
      continue;
    }
    run = null;
    out.push(changesRouting(op) ? { ...op, reroutes: true } : op);
  }
  return out;
}
