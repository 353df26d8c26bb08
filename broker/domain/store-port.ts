import type { Agent, Delivery, DeliveryState, EventKind, Lease, LeaseMode, Message, RelayEvent, Task, TaskStatus } from '../../protocol/index.js';

/*
 * The store the domain needs. The domain plans every write as an op with its preconditions; the
 * store applies a batch of ops in one transaction, assigns ids, and answers one outcome per op
 * (a failed precondition is an outcome, not an exception) together with the changes it made, in
 * the order it made them. `apply` returns a Promise: a store may commit off the event loop or
 * over the network. SQLite (broker/store) is one implementation; the store contract suite
 * (test/unit/store-contract.ts) is what a second one must pass.
 *
 * Reads are asynchronous too: a networked store answers them over the network. The SQLite store
 * answers at once from its read connection (promised.ts wraps its synchronous tables).
 */

// ---- records -------------------------------------------------------------------------------

/**
 * An agent as stored: the wire shape (less `connected`, which is live state) plus its token hash
 * and its inbox floor (the newest message id when it was first registered: nothing before it can
 * be addressed to it).
 */
export type StoredAgent = Omit<Agent, 'connected'> & { tokenHash: string; offlineAt: number | null; inboxFloor: number };
/** An agent as the relay's memory holds it, for routing and listing: everything but its `meta`. */
export type CachedAgent = Omit<StoredAgent, 'meta'>;

export function withoutMeta(a: StoredAgent): CachedAgent {
  const { meta: _m, ...rest } = a;
  return rest;
}

/**
 * Which relay node holds the agent's connection: `epoch` rises with every binding, so of two
 * connections of one agent on different nodes the newer is known everywhere (the older is closed
 * with 4502). `node` null: connected nowhere since `at`.
 */
export interface StoredSession {
  agentId: string;
  node: string | null;
  epoch: number;
  at: number;
}

/** Bind the agent's connection to this node (with a registration): a new epoch. */
export interface SessionBind {
  node: string;
}

export type NewMessage = Omit<Message, 'id' | 'threadId'> & { threadId: number | null };
export type NewTask = Pick<Task, 'title' | 'body' | 'target' | 'channel' | 'dedupeKey' | 'source' | 'callbackUrl' | 'meta' | 'createdAt'>;

export interface ListFilter {
  since: number;
  limit: number;
  channel: string | null;
  threadId: number | null;
}

/** One word or phrase of a search; `prefix`: its last word may be the start of a longer one. */
export interface SearchTerm {
  text: string;
  prefix: boolean;
}

export interface SearchFilter {
  /** Every term must match the subject or the body. */
  terms: readonly SearchTerm[];
  /** Only ids above this. */
  since: number;
  channel: string | null;
  from: string | null;
  to: string | null;
  /** Only this agent's inbox (the messages addressed to it, above its inbox floor); null: every message. */
  inbox: { agentId: string; floor: number } | null;
  limit: number;
}

/** A match in the store's relevance order: ascending `rank`, equal ranks newest first. */
export interface RankedId {
  id: number;
  rank: number;
}

export interface StoredHit {
  message: Message;
  /** Text around the best match, matched words between « and ». */
  snippet: string;
}

export interface TaskFilter {
  status: TaskStatus | null;
  target: string | null;
  channel: string | null;
  claimedBy: string | null;
  since: number;
  limit: number;
}

export type OutboxState = 'pending' | 'delivered' | 'dead';

export interface OutboxEntry {
  id: number;
  webhookId: string;
  taskId: number;
  eventId: number;
  url: string;
  /** Which secret signs it: `integration:NAME` or `relay`. */
  signer: string;
  payload: string;
  state: OutboxState;
  attempts: number;
  nextAt: number;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: number;
  updatedAt: number;
  /** Raised each time a dispatcher leases the entry: its attempt is recorded only under the lease it took. */
  leaseEpoch: number;
}

/** The states a span can record: a range of an agent's messages handed over together, or read together. */
export type SpanState = 'pushed' | 'read';

export interface DeliverySpan {
  id: number;
  first: number;
  last: number;
  at: number;
}

// ---- write ops -----------------------------------------------------------------------------

/** An event the op appends when it succeeds; its id and time are the store's. */
export interface EventSpec {
  kind: EventKind;
  agentId: string | null;
  data: Record<string, unknown>;
}

/** A claimable message offering a task to its target, routed by the domain when it planned the op. */
export interface Announcement {
  from: string;
  recipients: string[];
}

/** The owner-visible state a task change was planned against; the store refuses the op if it moved. */
export interface TaskGuard {
  status: TaskStatus;
  claimedBy: string | null;
  attempts: number;
}

/** A claimed task the domain plans to release, with the announcement routed for it. */
export interface PlannedRelease {
  taskId: number;
  attempts: number;
  reason: string;
  by: string | null;
  announce: Announcement;
}

export type AgentPatch = Partial<
  Pick<StoredAgent, 'label' | 'tags' | 'capabilities' | 'channels' | 'client' | 'host' | 'cwd' | 'rig' | 'status' | 'ready' | 'system' | 'meta' | 'offlineAt' | 'lastSeenAt'>
>;

export interface TaskCreateInput {
  title: string;
  target: string;
  body: string | null;
  channel: string | null;
  dedupeKey: string | null;
  callbackUrl: string | null;
  meta: Record<string, unknown>;
}

/**
 * Recipients resolved by tag, capability, label or broadcast from a node's agent directory, which
 * follows the change feed (several nodes): `routedAt` is the feed position the directory had
 * reached. Precondition: no batch after that position changed an agent's routing (it is refused
 * as staleRoute, naming the newest such position, and planned again once the node has it).
 */
export interface RoutedAt {
  routedAt?: number;
}

export type WriteOp =
  /** Insert a message (and, when claimable, its task first). Precondition: `replyTo` exists (and see RoutedAt). */
  | ({ op: 'message.send'; at: number; message: NewMessage; recipients: string[]; task: (TaskCreateInput & { source: string }) | null } & RoutedAt)
  /**
   * task/create: resolve (close the live task of source + dedupeKey), dedupe (bump it), or create
   * and announce. With a receipt, a webhook delivery id already recorded is a duplicate.
   */
  | ({
      op: 'task.create';
      at: number;
      from: string;
      source: string;
      input: TaskCreateInput;
      action: 'trigger' | 'resolve';
      /** The route of the announcement, or why there is none (used only if a task is created). */
      announce: Announcement | { unroutable: string };
      receipt: { integration: string; deliveryId: string } | null;
    } & RoutedAt)
  /** Claim an open, unclaimed task. */
  | { op: 'task.claim'; at: number; taskId: number; agentId: string }
  /** Set status and progress of a task still as `guard` says. */
  | { op: 'task.transition'; at: number; taskId: number; guard: TaskGuard; status: TaskStatus; progress: number; event: EventSpec }
  /** Return a claimed task to open, record why, and announce it again (see RoutedAt for the announcement's route). */
  | ({ op: 'task.release'; at: number; guard: TaskGuard; release: PlannedRelease } & RoutedAt)
  /** A new agent. Preconditions: the id is free and the registry below `maxAgents`. */
  | { op: 'agent.insert'; at: number; agent: Omit<StoredAgent, 'inboxFloor'>; maxAgents: number; events: EventSpec[]; bind?: SessionBind }
  /** Change fields of an agent whose token hash and status are still `expect`. */
  | { op: 'agent.patch'; at: number; id: string; expect: { tokenHash: string; status: Agent['status'] }; patch: AgentPatch; events: EventSpec[]; bind?: SessionBind }
  /** The agent's connection is on `node` now (an SSE stream; a registration binds with its own op): the next epoch. */
  | { op: 'session.bind'; at: number; agentId: string; node: string }
  /** The agent's connection to `node` (of `epoch`) is gone. Precondition: its binding is still that one. */
  | { op: 'session.unbind'; at: number; agentId: string; node: string; epoch: number }
  /**
   * Take an agent offline and release its claimed work and its leases. Preconditions: it is not
   * offline, and its unfinished claimed tasks are exactly `releases` (same attempts); see RoutedAt
   * for the route of their announcements.
   */
  | ({ op: 'agent.offline'; at: number; id: string; patch: AgentPatch; reason: string; releases: PlannedRelease[] } & RoutedAt)
  /** Keep last-seen fresh (bookkeeping). */
  | { op: 'agent.touch'; at: number; ids: string[] }
  | { op: 'delivery.read'; at: number; agentId: string; ids: number[] | null; upTo: number | null }
  /** Precondition: the message was addressed to the agent. */
  | { op: 'delivery.ack'; at: number; agentId: string; messageId: number; state: DeliveryState }
  /** Record single deliveries' states (bookkeeping: a poll handed them over). */
  | { op: 'delivery.mark'; at: number; agentId: string; messageIds: number[]; state: DeliveryState }
  /** Record a span of pushed messages: a new row, or extend the row `rowId`. */
  | { op: 'delivery.span'; at: number; agentId: string; rowId: number | null; first: number; last: number }
  /**
   * Lease up to `limit` due entries to the dispatcher asking (the oldest pending entry of each
   * task only, so a task's callbacks go in event order): each is due again `leaseMs` from `at`
   * (a dispatcher that died re-sends it then, with the same webhook-id) and its epoch is raised.
   */
  | { op: 'callback.lease'; at: number; limit: number; leaseMs: number }
  /** Record an attempt. Precondition: the entry is still under the lease of `epoch` (refused `notLeased` otherwise). */
  | { op: 'callback.attempt'; at: number; id: number; epoch: number; state: OutboxState; nextAt: number; status: number | null; error: string | null }
  /**
   * Hold resources, all or none. Preconditions: the agent is not offline and holds fewer than
   * `maxHeld` leases in force, and no lease of another agent in force at `at` overlaps them where
   * either is exclusive. Leases whose TTL passed by `at` are ended first (every lease op does).
   */
  | { op: 'lease.acquire'; at: number; agentId: string; mode: LeaseMode; resources: string[]; reason: string | null; ttlMs: number; maxHeld: number }
  /** A new token and expiry; `ttlMs` null keeps the lease's own. Precondition: see LeaseHold. */
  | { op: 'lease.renew'; at: number; hold: LeaseHold; ttlMs: number | null }
  /** End a lease. Precondition: see LeaseHold. */
  | { op: 'lease.release'; at: number; hold: LeaseHold }
  /** End every lease whose TTL passed by `at` (the sweep). */
  | { op: 'lease.expire'; at: number }
  /** Retention. */
  | { op: 'prune'; at: number; cutoff: number; offlineCutoff: number };

/** Who presents which lease: it must be in force, held by `agentId`, with `token` its newest. */
export interface LeaseHold {
  leaseId: number;
  agentId: string;
  token: number;
}

/** A lease that stands in the way of an acquire, and which of its resources meets which asked for. */
export interface LeaseConflict {
  lease: Lease;
  held: string;
  requested: string;
}

export type OpName = WriteOp['op'];

// ---- outcomes ------------------------------------------------------------------------------

/** One change a commit made, for the domain to publish after it (in this order). */
export type Change =
  | { kind: 'message'; message: Message; recipients: string[] }
  /** A task event: the task as it was right after the event. */
  | { kind: 'task'; task: Task; event: RelayEvent; alsoAgents: (string | null)[] }
  | { kind: 'event'; event: RelayEvent }
  | { kind: 'agent'; agent: StoredAgent }
  | { kind: 'agentRemoved'; id: string }
  /** Where the agent is connected now (node null: nowhere). */
  | { kind: 'session'; session: StoredSession }
  /** A lease event: the lease as it was right after it. */
  | { kind: 'lease'; lease: Lease; event: RelayEvent }
  /** An outbox entry was written: the dispatcher should look. */
  | { kind: 'callback' };

export interface PruneCounts {
  messages: number;
  prunedThrough: number;
  events: number;
  tasks: number;
  callbacks: number;
  receipts: number;
  leases: number;
  agents: string[];
}

/** What each op answers when it was applied; `refused` names the precondition that failed. */
export interface Results {
  'message.send': { message: Message; task: Task | null };
  'task.create': { task: Task; created: boolean };
  'task.claim': { task: Task };
  'task.transition': { task: Task };
  'task.release': { task: Task };
  'agent.insert': { agent: StoredAgent; newestMessageId: number; session: StoredSession | null };
  'agent.patch': { agent: StoredAgent; newestMessageId: number; session: StoredSession | null };
  'session.bind': { session: StoredSession };
  'session.unbind': { session: StoredSession };
  'agent.offline': { agent: StoredAgent };
  'agent.touch': null;
  'delivery.read': { marked: number };
  'delivery.ack': { delivery: Delivery };
  'delivery.mark': null;
  'delivery.span': { rowId: number };
  'callback.lease': { entries: OutboxEntry[] };
  'callback.attempt': null;
  'lease.acquire': { lease: Lease };
  'lease.renew': { lease: Lease };
  'lease.release': { lease: Lease };
  'lease.expire': { leases: Lease[] };
  prune: PruneCounts;
}

/** How often a write refused as `changed` (planned against a state that moved on) is planned again before the caller hears -32003. */
export const REPLANS = 5;

export type Refusal =
  | { refused: 'replyToMissing' }
  /** An agent's routing changed after `routedAt` (see RoutedAt): at feed position `position`. */
  | { refused: 'staleRoute'; position: number }
  | { refused: 'notFound' }
  /** The task is claimed (by `owner`) or closed: it can no longer be claimed. */
  | { refused: 'notOpen'; task: Task }
  /** Planned against a state that has moved on: read again and re-plan. */
  | { refused: 'changed' }
  | { refused: 'noLiveTask' }
  | { refused: 'duplicate'; taskId: number | null }
  | { refused: 'unroutable'; message: string }
  | { refused: 'full'; count: number }
  | { refused: 'notDelivered' }
  /** The agent asking for a lease is offline (an HTTP caller that stopped heartbeating). */
  | { refused: 'holderOffline' }
  /** Another agent's lease in force overlaps the resources asked for. */
  | { refused: 'leaseConflict'; conflicts: LeaseConflict[] }
  /** The lease is not the presenter's to change: another holder, ended, expired, or an older token. */
  | { refused: 'leaseNotHeld'; lease: Lease }
  /** The outbox entry's lease passed to another dispatcher (this one's expired): its attempt is not recorded. */
  | { refused: 'notLeased' }
  /** The op threw (a bug or a constraint the plan missed); only its own writes were undone. */
  | { refused: 'error'; error: unknown };

export type Outcome<N extends OpName = OpName> = ({ ok: true; value: Results[N] } | ({ ok: false } & Refusal)) & { changes: Change[] };

/** The op of kind N. */
export type OpOf<N extends OpName> = Extract<WriteOp, { op: N }>;

// ---- reads ---------------------------------------------------------------------------------

export interface MessageReads {
  get(id: number): Promise<Message | undefined>;
  maxId(): Promise<number>;
  /**
   * Messages addressed to the agent after `since`, from no lower than its inbox `floor`; with
   * `unread`, from past its read-through cursor, leaving out single messages it marked read.
   */
  inbox(agentId: string, f: ListFilter & { floor: number } & ({ unread: false } | { unread: true; readThrough: number })): Promise<Message[]>;
  all(f: ListFilter): Promise<Message[]>;
  thread(threadId: number, since: number, limit: number): Promise<Message[]>;
}

/**
 * Full-text search: asynchronous, since ranking every match of a common word over a million
 * messages takes a tenth of a second and more (bench/search.ts): a store runs it off the event loop.
 */
export interface SearchReads {
  /** The best matches first, at most `limit`. */
  rank(f: SearchFilter): Promise<RankedId[]>;
  /** These matches of the terms with their snippets, in the order given; an id no longer stored is left out. */
  hits(terms: readonly SearchTerm[], ids: readonly number[]): Promise<StoredHit[]>;
}

export interface DeliveryReads {
  forMessage(messageId: number): Promise<Delivery[]>;
  get(agentId: string, messageId: number): Promise<Delivery | undefined>;
  readThrough(agentId: string): Promise<number>;
  latestSpan(agentId: string, state: SpanState): Promise<DeliverySpan | undefined>;
}

export interface TaskReads {
  get(id: number): Promise<Task | undefined>;
  list(f: TaskFilter): Promise<Task[]>;
  liveClaimedBy(agentId: string): Promise<Task[]>;
  countByStatus(): Promise<Record<string, number>>;
}

export interface EventReads {
  list(f: { since: number; kind: EventKind | null; taskId: number | null; limit: number }): Promise<RelayEvent[]>;
  ofTask(taskId: number, since?: number, limit?: number): Promise<RelayEvent[]>;
  maxId(): Promise<number>;
}

export interface OutboxReads {
  due(now: number, limit: number): Promise<OutboxEntry[]>;
  nextDueAt(): Promise<number | null>;
  ofTask(taskId: number, firstEventId?: number, lastEventId?: number): Promise<OutboxEntry[]>;
  depthByState(): Promise<Record<OutboxState, number>>;
}

export interface SessionReads {
  all(): Promise<StoredSession[]>;
}

/** The relay nodes sharing a store, as far as this one has heard (a store of one node has none). */
export interface NodeDirectory {
  /** This node's id: new at every start. */
  readonly self: string;
  /** When `node` was last heard from (this node's clock), or undefined when never. */
  lastHeard(node: string): number | undefined;
}

export interface AgentReads {
  all(): Promise<StoredAgent[]>;
  get(id: string): Promise<StoredAgent | undefined>;
  metaOf(id: string): Promise<Record<string, unknown>>;
}

export interface LeaseReads {
  get(id: number): Promise<Lease | undefined>;
  /** Leases in force at `now` with an id above `since`, in id order. */
  list(f: { now: number; since: number; holder: string | null }): Promise<Lease[]>;
  /** Leases whose TTL passed by `now` and whose end is not recorded yet. */
  expired(now: number): Promise<Lease[]>;
}

export interface ReceiptReads {
  seen(integration: string, deliveryId: string): Promise<{ taskId: number | null } | undefined>;
}

export interface StoreHealth {
  /** The newest storage fault a commit met, cleared by the next commit that wrote without one. */
  readonly lastFailure: { at: number; error: string } | null;
  /** True when a write could be taken now; never waits past the busy timeout (and never blocks the event loop). */
  isWritable(): Promise<boolean>;
  /** Durability settings as the store reports them (synchronous, journal mode). */
  settings(): { synchronous: string; journalMode: string };
}

/**
 * How a store several relay nodes share publishes: every batch committed on any node reaches each
 * node here, in commit order, and a node's own batch is answered (apply resolves) only once its
 * feed has published it. A store without a feed (SQLite: one process) leaves publishing to the
 * commit queue, from what apply answers.
 */
export interface ChangeFeed {
  /**
   * Publish every batch committed since the store opened, in order. `resync`: the feed lost its
   * place (rows it had not read were pruned); what was published since may have gaps.
   */
  follow(publish: (changes: readonly Change[]) => void, resync: (why: string) => void): void;
  /** The newest position this node has published. */
  through(): number;
  /** Resolves once this node has published every batch through `position`. */
  passed(position: number): Promise<void>;
  /** Resolves once this node has published every batch committed (on any node) before the call. */
  caughtUp(): Promise<void>;
}

export interface RelayStore {
  readonly messages: MessageReads;
  readonly search: SearchReads;
  readonly deliveries: DeliveryReads;
  readonly tasks: TaskReads;
  readonly events: EventReads;
  readonly outbox: OutboxReads;
  readonly agents: AgentReads;
  readonly receipts: ReceiptReads;
  readonly leases: LeaseReads;
  readonly sessions: SessionReads;
  readonly nodes?: NodeDirectory;
  readonly health: StoreHealth;
  readonly feed?: ChangeFeed;
  /** Messages with ids up to this were pruned: a cursor below it cannot be resumed. */
  prunedThrough(): Promise<number>;
  /**
   * Apply the ops in one transaction, in order; each answers its outcome. Rejects (with a
   * RelayError) only when the batch as a whole was not written: nothing of it is then durable.
   */
  apply(ops: readonly WriteOp[]): Promise<Outcome[]>;
  /** Finish the batch in hand, then release the storage. */
  close(): Promise<void>;
}

/** The body of a task callback (Standard Webhooks payload), written to the outbox with the event. */
export function callbackPayload(task: Task, event: RelayEvent): string {
  return JSON.stringify({ type: event.kind, timestamp: new Date(event.at).toISOString(), data: { event, task } });
}

/**
 * Which secret signs a task's callbacks: a task of an integration (its source names one) is signed
 * with that integration's secret, all others with the relay callback secret.
 */
export function callbackSigner(integrations: { has(source: string): boolean }): (source: string) => string {
  return (source) => (integrations.has(source) ? `integration:${source}` : 'relay');
}

/** The webhook id of a task event's callback: the same on every retry. */
export function callbackWebhookId(event: RelayEvent): string {
  return `msg_${event.id}`;
}
