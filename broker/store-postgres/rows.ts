import type { AgentStatus, EventKind, Lease, LeaseEnd, LeaseMode, Message, RelayEvent, Task, TaskStatus } from '../../protocol/index.js';
import type { DeliverySpan, OutboxEntry, OutboxState, StoredAgent, StoredSession } from '../domain/store-port.js';

/*
 * Rows to protocol objects: the same objects, field for field, as the SQLite store returns
 * (broker/store/*.ts). A row comes from a read (pg's row object) or from an outcome of relay_apply
 * (to_jsonb of the row): both have the column names, bigint as numbers, booleans and text[] as
 * such, and JSON columns as the text the relay wrote (parsed here, so key order survives).
 */

type Row = Record<string, unknown>;

const n = (v: unknown) => v as number;
const nn = (v: unknown) => (v === null || v === undefined ? null : (v as number));
const s = (v: unknown) => v as string;
const sn = (v: unknown) => (v === null || v === undefined ? null : (v as string));
const json = <T>(v: unknown) => JSON.parse(v as string) as T;

/** The columns of `messages` a read selects (not the search vector). */
export const MESSAGE_COLUMNS = 'id, from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta';

export function messageFromRow(r: Row): Message {
  return {
    id: n(r.id),
    from: s(r.from_id),
    to: s(r.to_target),
    channel: sn(r.channel),
    subject: sn(r.subject),
    body: s(r.body),
    replyTo: nn(r.reply_to),
    threadId: n(r.thread_id),
    claimable: r.claimable === true,
    taskId: nn(r.task_id),
    createdAt: n(r.created_at),
    meta: json(r.meta),
  };
}

export function taskFromRow(r: Row): Task {
  return {
    id: n(r.id),
    title: s(r.title),
    body: sn(r.body),
    target: s(r.target),
    channel: sn(r.channel),
    status: r.status as TaskStatus,
    progress: n(r.progress),
    claimedBy: sn(r.claimed_by),
    claimedAt: nn(r.claimed_at),
    dedupeKey: sn(r.dedupe_key),
    source: s(r.source),
    occurrences: n(r.occurrences),
    messageId: nn(r.message_id),
    callbackUrl: sn(r.callback_url),
    attempts: n(r.attempts),
    createdAt: n(r.created_at),
    updatedAt: n(r.updated_at),
    closedAt: nn(r.closed_at),
    meta: json(r.meta),
  };
}

export function eventFromRow(r: Row): RelayEvent {
  return { id: n(r.id), at: n(r.at), kind: r.kind as EventKind, taskId: nn(r.task_id), agentId: sn(r.agent_id), data: json(r.data) };
}

export function agentFromRow(r: Row): StoredAgent {
  return {
    id: s(r.id),
    label: s(r.label),
    tags: json(r.tags),
    capabilities: json(r.capabilities),
    channels: json(r.channels),
    client: sn(r.client),
    host: sn(r.host),
    cwd: sn(r.cwd),
    rig: sn(r.rig),
    status: r.status as AgentStatus,
    ready: r.ready === true,
    system: r.system === true,
    tokenHash: s(r.token_hash),
    registeredAt: n(r.registered_at),
    lastSeenAt: n(r.last_seen_at),
    offlineAt: nn(r.offline_at),
    meta: json(r.meta),
    inboxFloor: n(r.inbox_floor),
  };
}

export function leaseFromRow(r: Row): Lease {
  return {
    id: n(r.id),
    agentId: s(r.agent_id),
    mode: r.mode as LeaseMode,
    resources: json(r.resources),
    reason: sn(r.reason),
    token: n(r.token),
    ttlMs: n(r.ttl_ms),
    acquiredAt: n(r.acquired_at),
    renewedAt: n(r.renewed_at),
    expiresAt: n(r.expires_at),
    releasedAt: nn(r.released_at),
    endedBy: r.ended_by as LeaseEnd | null,
  };
}

export function outboxFromRow(r: Row): OutboxEntry {
  return {
    id: n(r.id),
    webhookId: s(r.webhook_id),
    taskId: n(r.task_id),
    eventId: n(r.event_id),
    url: s(r.url),
    signer: s(r.signer),
    payload: s(r.payload),
    state: r.state as OutboxState,
    attempts: n(r.attempts),
    nextAt: n(r.next_at),
    lastStatus: nn(r.last_status),
    lastError: sn(r.last_error),
    createdAt: n(r.created_at),
    updatedAt: n(r.updated_at),
    leaseEpoch: n(r.lease_epoch),
  };
}

export function sessionFromRow(r: Row): StoredSession {
  return { agentId: s(r.agent_id), node: sn(r.node), epoch: n(r.epoch), at: n(r.at) };
}

export function spanFromRow(r: Row): DeliverySpan {
  return { id: n(r.id), first: n(r.first_id), last: n(r.last_id), at: n(r.at) };
}
