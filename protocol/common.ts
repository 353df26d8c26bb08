import { z } from 'zod';
import { LIMITS } from './limits.js';
import { EXTERNAL_SENDER_PATTERN, EXTERNAL_SENDER_RULE } from './senders.js';
import { utf8Length } from './well-formed.js';

/** An agent id: lowercase letters, digits, dashes, dots, underscores and colons; 1–128 chars. */
export const AgentIdSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z0-9][a-z0-9._:-]*$/, 'must be lowercase [a-z0-9._:-], starting with a letter or digit');

/** A sender name chosen by an observer: `ext:` followed by a short name. */
export const ExternalSenderSchema = z.string().max(128).regex(EXTERNAL_SENDER_PATTERN, EXTERNAL_SENDER_RULE);

/** A target: an agent id, `tag:NAME`, `cap:NAME`, `label:NAME` or `broadcast`. */
export const TargetSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^(broadcast|(tag|cap|label):.+|[a-z0-9][a-z0-9._:-]*)$/, 'must be an agent id, tag:NAME, cap:NAME, label:NAME or broadcast');

const Name = z.string().min(1).max(64);
export const NameListSchema = z.array(Name).max(64);
export const ChannelSchema = z.string().min(1).max(64);
/** A message id, which is also the cursor. */
export const CursorSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
export const IdSchema = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
export const MetaSchema = z.record(z.string(), z.unknown());
/**
 * `meta` as a caller may set it: bounded in keys and size, so no record can grow the relay's
 * memory or its list results without limit. Records stored before the bound still load (MetaSchema).
 */
export const MetaParamSchema = MetaSchema.superRefine((meta, ctx) => {
  const keys = Object.keys(meta).length;
  if (keys > LIMITS.maxMetaKeys) {
    ctx.addIssue({ code: 'custom', message: `too many keys (${keys}); at most ${LIMITS.maxMetaKeys}` });
    return;
  }
  const bytes = utf8Length(JSON.stringify(meta));
  if (bytes > LIMITS.maxMetaBytes) {
    ctx.addIssue({ code: 'custom', message: `too large (${bytes} bytes of JSON); at most ${LIMITS.maxMetaBytes}, keep bulky data elsewhere` });
  }
});
export const LimitSchema = z.number().int().min(1).max(LIMITS.maxListLimit);
/** Epoch milliseconds. */
export const TimeSchema = z.number().int();

export const AgentStatusSchema = z.enum(['online', 'busy', 'away', 'offline']);

export const AgentSchema = z.object({
  id: AgentIdSchema,
  label: z.string(),
  tags: z.array(z.string()),
  capabilities: z.array(z.string()),
  channels: z.array(z.string()),
  client: z.string().nullable(),
  host: z.string().nullable(),
  cwd: z.string().nullable(),
  rig: z.string().nullable(),
  status: AgentStatusSchema,
  ready: z.boolean(),
  system: z.boolean(),
  /** True while the agent holds a live WebSocket or SSE stream to this relay. */
  connected: z.boolean(),
  registeredAt: TimeSchema,
  lastSeenAt: TimeSchema,
  meta: MetaSchema,
});

/** An agent without its `meta`: what agent/updated pushes carry (agent/list has the meta). */
export const AgentSummarySchema = AgentSchema.omit({ meta: true });

export const MessageSchema = z.object({
  id: IdSchema,
  from: z.string(),
  to: z.string(),
  channel: z.string().nullable(),
  subject: z.string().nullable(),
  body: z.string(),
  replyTo: IdSchema.nullable(),
  /** Id of the root message of the thread (the message's own id for a root). */
  threadId: IdSchema,
  claimable: z.boolean(),
  taskId: IdSchema.nullable(),
  createdAt: TimeSchema,
  meta: MetaSchema,
});

/** Per-recipient delivery states, in order; a recipient only moves forward. */
export const DeliveryStateSchema = z.enum(['queued', 'pushed', 'injected', 'read']);
export const DELIVERY_ORDER = ['queued', 'pushed', 'injected', 'read'] as const;

export const DeliverySchema = z.object({
  messageId: IdSchema,
  agentId: z.string(),
  state: DeliveryStateSchema,
  at: TimeSchema,
});

export const TaskStatusSchema = z.enum(['open', 'claimed', 'in_progress', 'blocked', 'done', 'failed', 'canceled']);
export const TERMINAL_TASK_STATUSES = ['done', 'failed', 'canceled'] as const;

/** A task in one of these states is finished: it can no longer be claimed, released or changed. */
export function isTerminalStatus(status: z.infer<typeof TaskStatusSchema>): boolean {
  return (TERMINAL_TASK_STATUSES as readonly string[]).includes(status);
}

export const TaskSchema = z.object({
  id: IdSchema,
  title: z.string(),
  body: z.string().nullable(),
  target: z.string(),
  channel: z.string().nullable(),
  status: TaskStatusSchema,
  /** 0–100. */
  progress: z.number().int().min(0).max(100),
  claimedBy: z.string().nullable(),
  claimedAt: TimeSchema.nullable(),
  dedupeKey: z.string().nullable(),
  source: z.string(),
  occurrences: z.number().int(),
  /** The claimable message that first announced the task. */
  messageId: IdSchema.nullable(),
  callbackUrl: z.string().nullable(),
  /** Claim attempts so far; the current claim token equals this while claimed. */
  attempts: z.number().int(),
  createdAt: TimeSchema,
  updatedAt: TimeSchema,
  closedAt: TimeSchema.nullable(),
  meta: MetaSchema,
});

export const EventKindSchema = z.enum([
  'task.created',
  'task.deduped',
  'task.claimed',
  'task.updated',
  'task.released',
  'task.closed',
  'agent.online',
  'agent.offline',
  'lease.acquired',
  'lease.renewed',
  'lease.released',
]);

export const LeaseModeSchema = z.enum(['exclusive', 'shared']);
/** Why a lease ended: its holder released it, its TTL passed, or its holder went offline. */
export const LeaseEndSchema = z.enum(['released', 'expired', 'offline']);

export const LeaseSchema = z.object({
  id: IdSchema,
  agentId: z.string(),
  mode: LeaseModeSchema,
  resources: z.array(z.string()),
  reason: z.string().nullable(),
  /** The fencing token: the newest acquire or renew of this lease; higher than any issued before it on this relay. */
  token: z.number().int(),
  ttlMs: z.number().int(),
  acquiredAt: TimeSchema,
  renewedAt: TimeSchema,
  expiresAt: TimeSchema,
  releasedAt: TimeSchema.nullable(),
  endedBy: LeaseEndSchema.nullable(),
});

export const EventSchema = z.object({
  id: IdSchema,
  at: TimeSchema,
  kind: EventKindSchema,
  taskId: IdSchema.nullable(),
  agentId: z.string().nullable(),
  data: MetaSchema,
});

/** One signed callback of a task event, as the outbox holds it: `dead` is a dead letter. */
export const CallbackDeliverySchema = z.object({
  webhookId: z.string(),
  eventId: IdSchema,
  url: z.string(),
  state: z.enum(['pending', 'delivered', 'dead']),
  attempts: z.number().int(),
  nextAt: TimeSchema,
  lastStatus: z.number().int().nullable(),
  lastError: z.string().nullable(),
  createdAt: TimeSchema,
  updatedAt: TimeSchema,
});

export type Agent = z.infer<typeof AgentSchema>;
export type AgentStatus = z.infer<typeof AgentStatusSchema>;
export type AgentSummary = z.infer<typeof AgentSummarySchema>;
export type Message = z.infer<typeof MessageSchema>;
export type Delivery = z.infer<typeof DeliverySchema>;
export type DeliveryState = z.infer<typeof DeliveryStateSchema>;
export type Task = z.infer<typeof TaskSchema>;
export type TaskStatus = z.infer<typeof TaskStatusSchema>;
export type RelayEvent = z.infer<typeof EventSchema>;
export type CallbackDelivery = z.infer<typeof CallbackDeliverySchema>;
export type EventKind = z.infer<typeof EventKindSchema>;
export type Lease = z.infer<typeof LeaseSchema>;
export type LeaseMode = z.infer<typeof LeaseModeSchema>;
export type LeaseEnd = z.infer<typeof LeaseEndSchema>;
