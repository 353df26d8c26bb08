import Database from 'better-sqlite3';

/**
 * A queue-history checker. Workloads record what they attempted and what the relay acknowledged
 * (sends, webhook deliveries, claims, completions) and what the client library handed to each
 * application; `check` then holds it against the database itself (its rows, read by
 * `sqliteHistoryRows` here or by test/postgres/history-rows.ts):
 *
 * - lost: an acknowledged send, webhook or claim that is not in the database as acknowledged;
 * - wrong owner: an acknowledged claim whose committed claim (same attempt) names someone else;
 * - second owner: a task with two acknowledged claims, or two committed claims with no release
 *   between them (two owners at once);
 * - unexpected: a row or a delivery that nobody attempted, or attempted once and written twice;
 * - refused but present: a send answered with an error whose message is in the database;
 * - duplicates and order at the application: a message id handed over twice, or out of order;
 * - lost at the application: an acknowledged message for a client that never reached it.
 */

/** What the checks read from the database: messages, tasks, claim events, each client's inbox. */
export interface HistoryRows {
  /** SQLite's integrity_check (`ok`); null where the store has none. */
  integrity: string | null;
  messages: Array<{ id: number; fromId: string; body: string; taskId: number | null }>;
  tasks: Array<{ id: number; title: string; source: string; status: string; claimedBy: string | null; attempts: number }>;
  /** task.claimed and task.released events, in id order. */
  claimEvents: Array<{ taskId: number; kind: string; agentId: string | null; data: string }>;
  /** client → ids of the messages addressed to it. */
  inbox: Map<string, number[]>;
}

/** The rows of a SQLite relay database, for `clients`' inboxes. */
export function sqliteHistoryRows(dbPath: string, clients: readonly string[]): HistoryRows {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const inbox = db.prepare<[string], number>(`SELECT id FROM messages WHERE instr(recipients, ' ' || ? || ' ') > 0 ORDER BY id`).pluck();
    return {
      integrity: String(db.pragma('integrity_check', { simple: true })),
      messages: db.prepare(`SELECT id, from_id AS fromId, body, task_id AS taskId FROM messages ORDER BY id`).all() as HistoryRows['messages'],
      tasks: db.prepare(`SELECT id, title, source, status, claimed_by AS claimedBy, attempts FROM tasks ORDER BY id`).all() as HistoryRows['tasks'],
      claimEvents: db.prepare(`SELECT task_id AS taskId, kind, agent_id AS agentId, data FROM events WHERE kind IN ('task.claimed', 'task.released') ORDER BY id`).all() as HistoryRows['claimEvents'],
      inbox: new Map(clients.map((c) => [c, inbox.all(c) as number[]])),
    };
  } finally {
    db.close();
  }
}

/** The sender of the relay's own announcements (a released task, announced again). */
const RELAY_SENDER = 'ext:relay';

export interface ClaimAck {
  taskId: number;
  owner: string;
  attempt: number;
}

export class History {
  /** Bodies of message/send calls, before sending. */
  readonly sendsAttempted = new Set<string>();
  /** body → acknowledged message (and task, for claimable sends). */
  readonly sendsAcked = new Map<string, { id: number; to: string; taskId: number | null }>();
  /** Sends whose answer never came (the relay died): they may or may not be committed. */
  sendsIndeterminate = 0;
  /** Sends refused by the relay, by error code. */
  readonly sendsRefused = new Map<number, number>();
  /** Bodies of the refused sends: none may be in the database. */
  readonly refusedBodies = new Set<string>();

  /** Webhook delivery ids (the task title too), before posting. */
  readonly hooksAttempted = new Set<string>();
  /** delivery id → task id, from a 201 or a 200 duplicate answer. */
  readonly hooksAcked = new Map<string, number>();
  /** Answers other than 201/200 (status → count). */
  readonly hooksRefused = new Map<number, number>();
  hookRetries = 0;
  hookDuplicateAnswers = 0;

  readonly claimsAcked: ClaimAck[] = [];
  claimConflicts = 0;
  claimsIndeterminate = 0;
  readonly claimsRefused = new Map<number, number>();
  readonly donesAcked: ClaimAck[] = [];

  /** client name → message ids handed to the application, in order. */
  readonly delivered = new Map<string, Array<{ id: number; body: string; from: string }>>();

  noteSendResult(body: string, to: string, outcome: { id: number; taskId: number | null } | { code: number } | 'indeterminate'): void {
    if (outcome === 'indeterminate') this.sendsIndeterminate++;
    else if ('code' in outcome) {
      this.sendsRefused.set(outcome.code, (this.sendsRefused.get(outcome.code) ?? 0) + 1);
      this.refusedBodies.add(body);
    } else this.sendsAcked.set(body, { id: outcome.id, to, taskId: outcome.taskId });
  }

  noteDelivery(client: string, m: { id: number; body: string; from: string }): void {
    let list = this.delivered.get(client);
    if (!list) this.delivered.set(client, (list = []));
    list.push(m);
  }

  /** How many messages the database holds for its inbox clients that their applications have not had yet. */
  missing(rows: HistoryRows): number {
    return this.missingIds(rows).length;
  }

  /** Those messages: which client, which id. */
  missingIds(rows: HistoryRows): Array<{ client: string; id: number }> {
    const out: Array<{ client: string; id: number }> = [];
    for (const [client, ids] of rows.inbox) {
      const got = new Set((this.delivered.get(client) ?? []).map((m) => m.id));
      for (const id of ids) if (!got.has(id)) out.push({ client, id });
    }
    return out;
  }

  get ackedCount(): number {
    return this.sendsAcked.size + this.hooksAcked.size;
  }

  /**
   * Acknowledged sends and webhooks missing from the database (cheap; run after every restart).
   * `since` skips the first entries already verified (Maps iterate in insertion order).
   */
  lostSince(dbPath: string, since: { sends: number; hooks: number }): { lost: number; checked: { sends: number; hooks: number } } {
    const db = new Database(dbPath, { readonly: true, fileMustExist: true });
    try {
      const getMsg = db.prepare<[number], { body: string }>(`SELECT body FROM messages WHERE id = ?`);
      const getTask = db.prepare<[number], { title: string }>(`SELECT title FROM tasks WHERE id = ?`);
      let lost = 0;
      let i = 0;
      const sends = [...this.sendsAcked.entries()];
      for (i = since.sends; i < sends.length; i++) {
        const [body, ack] = sends[i]!;
        if (getMsg.get(ack.id)?.body !== body) lost++;
      }
      const hooks = [...this.hooksAcked.entries()];
      let j = 0;
      for (j = since.hooks; j < hooks.length; j++) {
        const [hookId, taskId] = hooks[j]!;
        if (getTask.get(taskId)?.title !== hookId) lost++;
      }
      return { lost, checked: { sends: sends.length, hooks: hooks.length } };
    } finally {
      db.close();
    }
  }

  /**
   * The full check against the database. Each client in `rows.inbox` (client-library agents
   * registered before the load began) must have handed its application every message the database holds
   * for it: acknowledged or not, a committed message is delivered at least once.
   */
  check(rows: HistoryRows, opts: { publishers: (from: string) => boolean; hookSource: string }): HistoryFigures {
    const { integrity, messages, tasks, claimEvents } = rows;
    const byId = new Map(messages.map((m) => [m.id, m]));
    const taskById = new Map(tasks.map((x) => [x.id, x]));

    // Lost acknowledged sends and webhooks.
    let lostSends = 0;
    let taskLinkLost = 0;
    for (const [body, ack] of this.sendsAcked) {
      const row = byId.get(ack.id);
      if (!row || row.body !== body) lostSends++;
      else if (ack.taskId !== null && (row.taskId !== ack.taskId || !taskById.has(ack.taskId))) taskLinkLost++;
    }
    let lostHooks = 0;
    for (const [hookId, taskId] of this.hooksAcked) if (taskById.get(taskId)?.title !== hookId) lostHooks++;

    // Unexpected rows: written by nobody, or written twice for one attempt.
    let unexpectedRows = 0;
    let duplicateRows = 0;
    const released = new Set(claimEvents.filter((e) => e.kind === 'task.released').map((e) => e.taskId));
    const seenBodies = new Set<string>();
    let refusedPresent = 0;
    for (const m of messages) {
      if (this.refusedBodies.has(m.body)) refusedPresent++;
      if (opts.publishers(m.fromId)) {
        if (!this.sendsAttempted.has(m.body)) unexpectedRows++;
        else if (seenBodies.has(m.body)) duplicateRows++;
        seenBodies.add(m.body);
      } else if (m.fromId === `ext:${opts.hookSource}`) {
        if (!this.hooksAttempted.has(m.body)) unexpectedRows++;
      } else if (m.fromId === RELAY_SENDER) {
        // The relay announces a released task again: expected only for a task with a committed release.
        if (m.taskId === null || !released.has(m.taskId)) unexpectedRows++;
      } else unexpectedRows++;
    }
    const hookTitles = new Map<string, number>();
    for (const task of tasks) {
      if (task.source !== opts.hookSource) continue;
      if (!this.hooksAttempted.has(task.title)) unexpectedRows++;
      hookTitles.set(task.title, (hookTitles.get(task.title) ?? 0) + 1);
    }
    for (const n of hookTitles.values()) if (n > 1) duplicateRows += n - 1;

    // Claims: committed history per task, then each acknowledged claim against it.
    const committed = new Map<number, Array<{ kind: string; agentId: string | null; attempt: number | null }>>();
    for (const e of claimEvents) {
      let list = committed.get(e.taskId);
      if (!list) committed.set(e.taskId, (list = []));
      const data = JSON.parse(e.data) as { attempt?: number };
      list.push({ kind: e.kind, agentId: e.agentId, attempt: data.attempt ?? null });
    }
    let overlappingCommittedClaims = 0;
    for (const list of committed.values()) {
      let held = false;
      for (const e of list) {
        if (e.kind === 'task.claimed') {
          if (held) overlappingCommittedClaims++;
          held = true;
        } else held = false;
      }
    }
    let lostClaims = 0;
    let wrongOwner = 0;
    const ackedByTask = new Map<number, ClaimAck[]>();
    for (const c of this.claimsAcked) {
      const events = committed.get(c.taskId) ?? [];
      const same = events.filter((e) => e.kind === 'task.claimed' && e.attempt === c.attempt);
      if (same.length === 0) lostClaims++;
      else if (same.some((e) => e.agentId !== c.owner)) wrongOwner++;
      let list = ackedByTask.get(c.taskId);
      if (!list) ackedByTask.set(c.taskId, (list = []));
      list.push(c);
    }
    let secondOwner = overlappingCommittedClaims;
    for (const [taskId, list] of ackedByTask) {
      if (list.length < 2) continue;
      // Two acknowledged claims are fine only with a release committed between them.
      const releases = (committed.get(taskId) ?? []).filter((e) => e.kind === 'task.released').length;
      if (new Set(list.map((c) => c.attempt)).size < list.length || releases < list.length - 1) secondOwner++;
    }
    let lostDones = 0;
    for (const d of this.donesAcked) {
      const task = taskById.get(d.taskId);
      if (task?.status !== 'done' || task.claimedBy !== d.owner || task.attempts !== d.attempt) lostDones++;
    }

    // The applications (client library): once each, in order, nothing unknown, nothing missing.
    let appDuplicates = 0;
    let appOutOfOrder = 0;
    let appUnexpected = 0;
    let appMissing = 0;
    let appDelivered = 0;
    const expected = rows.inbox;
    for (const [client, list] of this.delivered) {
      const ids = new Set<number>();
      let last = 0;
      for (const m of list) {
        appDelivered++;
        if (ids.has(m.id)) appDuplicates++;
        ids.add(m.id);
        if (m.id <= last) appOutOfOrder++;
        last = Math.max(last, m.id);
        const row = byId.get(m.id);
        const known = this.sendsAttempted.has(m.body) || this.hooksAttempted.has(m.body);
        if (!known || !row || row.body !== m.body) appUnexpected++;
      }
      for (const id of expected.get(client) ?? []) if (!ids.has(id)) appMissing++;
    }
    for (const [client, ids] of expected) if (!this.delivered.has(client)) appMissing += ids.length;

    return {
      integrity,
      acked_sends: this.sendsAcked.size,
      acked_hooks: this.hooksAcked.size,
      acked_claims: this.claimsAcked.length,
      acked_dones: this.donesAcked.length,
      indeterminate: this.sendsIndeterminate + this.claimsIndeterminate,
      lost: lostSends + lostHooks + lostClaims + lostDones + taskLinkLost,
      wrong_owner: wrongOwner,
      second_owner: secondOwner,
      unexpected: unexpectedRows + appUnexpected,
      duplicate_writes: duplicateRows,
      refused_present: refusedPresent,
      app_delivered: appDelivered,
      app_duplicates: appDuplicates,
      app_out_of_order: appOutOfOrder,
      app_missing: appMissing,
    };
  }
}

export interface HistoryFigures {
  integrity: string | null;
  acked_sends: number;
  acked_hooks: number;
  acked_claims: number;
  acked_dones: number;
  indeterminate: number;
  lost: number;
  wrong_owner: number;
  second_owner: number;
  unexpected: number;
  duplicate_writes: number;
  /** Refused sends (an error answer) that are in the database all the same. */
  refused_present: number;
  app_delivered: number;
  app_duplicates: number;
  app_out_of_order: number;
  app_missing: number;
}
