import { z } from 'zod';
import type { RelayClient } from '../../clients/index.js';
import { IdSchema } from '../../protocol/common.js';
import * as agent from '../../protocol/methods/agent.js';
import * as lease from '../../protocol/methods/lease.js';
import * as message from '../../protocol/methods/message.js';
import * as task from '../../protocol/methods/task.js';
import { agentLine, leaseLine, messageLine, messageLines, taskLine } from './format.js';

/** What a tool hands back: one short text for the model, and the relay's answer as structured content. */
export interface ToolAnswer {
  text: string;
  data: Record<string, unknown>;
}

/** What the tools act through: the relay connection of this agent, and its claim tokens. */
export interface ToolContext {
  relay: RelayClient;
  /** The relay's HTTP base, for whoami. */
  url: string;
  /** Claim tokens by task id. */
  claims: TokenBook;
  /** Newest fencing tokens by lease id. */
  leases: TokenBook;
  /** Resolves when a message reaches this agent, or after `ms`. */
  nextMessage(ms: number): Promise<void>;
}

/** Tokens by task or lease id: kept in the identity store, so `agent-relay --as ID` sees them too. */
export interface TokenBook {
  get(id: number): number | undefined;
  set(id: number, token: number): void;
}

/** A refusal of the tool's own (before any relay call), with the contract's invalid-params code. */
export class ToolInputError extends Error {
  readonly code = -32602;
}

interface ToolSpec<S extends z.ZodObject> {
  title: string;
  description: string;
  input: S;
  run: (ctx: ToolContext, args: z.infer<S>) => Promise<ToolAnswer>;
}

const tool = <S extends z.ZodObject>(spec: ToolSpec<S>): ToolSpec<z.ZodObject> => spec as unknown as ToolSpec<z.ZodObject>;

/** The newest token this agent was given for the lease (renew and release present it). */
function leaseToken(ctx: ToolContext, leaseId: number): number {
  const token = ctx.leases.get(leaseId);
  if (token === undefined) throw new ToolInputError(`no token kept for lease #${leaseId}: it was not acquired by this agent here`);
  return token;
}

/** Longest an inbox call waits for a first message: MCP clients time tool calls out (about 60 s). */
const MAX_WAIT_SEC = 50;

/**
 * The tools, by name. A small set on purpose: each maps onto one or two methods of the relay's
 * method table, with its input schema taken from protocol/ (the fields that name the caller left
 * out: the server acts as its one registered agent).
 */
export const TOOLS: Record<string, ToolSpec<z.ZodObject>> = {
  whoami: tool({
    title: 'Who am I on the relay',
    description: "This session's agent on Agent Relay: its id (others send to it by this id), label, tags, capabilities, channels, and the relay address.",
    input: z.strictObject({}),
    run: async (ctx) => {
      const me = ctx.relay.agent;
      if (!me) throw new Error('not registered on the relay (it is reconnecting): try again in a moment');
      return { text: `${agentLine(me)} on ${ctx.url}${me.channels.length ? `, channels ${me.channels.join(',')}` : ''}`, data: { agent: me, url: ctx.url } };
    },
  }),

  list_agents: tool({
    title: 'Who is on the relay',
    description:
      'List agents (online ones unless a status is given), optionally those with a tag or capability. Send to one by its id, to a group with tag:NAME, cap:NAME or label:NAME, or to all with broadcast.',
    input: agent.AgentListParamsSchema.pick({ status: true, tag: true, capability: true, limit: true }),
    run: async (ctx, args) => {
      const r = await ctx.relay.call('agent/list', { status: 'online', ...args });
      return { text: r.agents.length ? r.agents.map(agentLine).join('\n') : 'no agents match', data: r };
    },
  }),

  send_message: tool({
    title: 'Send a message',
    description:
      "Send a message. `to` is an agent id, tag:NAME, cap:NAME, label:NAME or broadcast. `replyTo` (a message id) answers in that message's thread. `claimable: true` makes it a task that exactly one recipient can claim. Answers the message id and who it reached.",
    input: message.MessageSendParamsSchema.pick({ to: true, body: true, subject: true, channel: true, replyTo: true, claimable: true }),
    run: async (ctx, args) => {
      const r = await ctx.relay.call('message/send', args);
      const warnings = r.warnings.map((w) => `${w.agentId}: ${w.reason}`).join(', ');
      const task = r.task ? `; claimable as task #${r.task.id}` : '';
      return { text: `sent #${r.message.id} to ${r.recipients.length ? r.recipients.join(', ') : 'nobody'}${task}${warnings ? ` (${warnings})` : ''}`, data: r };
    },
  }),

  inbox: tool({
    title: 'Inbox',
    description: `Messages to this agent, oldest first: unread ones by default (unread: false for all), after a message id with since. waitSec (up to ${MAX_WAIT_SEC}) waits for one when there is none. Listing does not mark them read: use mark_read or read_message.`,
    input: message.MessageListParamsSchema.pick({ unread: true, since: true, limit: true, channel: true }).extend({
      waitSec: z.number().int().min(0).max(MAX_WAIT_SEC).optional(),
    }),
    run: async (ctx, { waitSec, ...args }) => {
      const params = { unread: true, ...args };
      let r = await ctx.relay.call('message/list', params);
      if (r.messages.length === 0 && waitSec) {
        await ctx.nextMessage(waitSec * 1000);
        r = await ctx.relay.call('message/list', params);
      }
      return { text: messageLines(r.messages, 'no messages'), data: r };
    },
  }),

  read_message: tool({
    title: 'Read a message',
    description: "One message in full, with its delivery state for each recipient; marks it read when it is in this agent's inbox.",
    input: z.strictObject({ id: IdSchema }),
    run: async (ctx, { id }) => {
      const r = await ctx.relay.call('message/get', { id });
      const me = ctx.relay.agent?.id;
      const mine = r.deliveries.some((d) => d.agentId === me && d.state !== 'read');
      if (mine) await ctx.relay.call('message/read', { ids: [id] });
      const states = r.deliveries.map((d) => `${d.agentId}: ${d.agentId === me && mine ? 'read' : d.state}`).join(', ');
      return { text: `${messageLine({ ...r.message, body: '' }).replace(/: $/, '')}\n${r.message.body}\n(delivery: ${states || 'none'})`, data: r };
    },
  }),

  mark_read: tool({
    title: 'Mark messages read',
    description: "Mark messages read in this agent's inbox: the given ids, or everything up to and including upTo.",
    input: message.MessageReadParamsSchema.pick({ ids: true, upTo: true }),
    run: async (ctx, args) => {
      if (!args.ids && args.upTo === undefined) throw new ToolInputError('give ids (message ids) or upTo (a message id)');
      const r = await ctx.relay.call('message/read', args);
      return { text: `marked ${r.marked} read`, data: r };
    },
  }),

  get_thread: tool({
    title: 'Thread',
    description: 'Every message of the thread a message belongs to, oldest first (since: only after that message id).',
    input: message.ThreadGetParamsSchema.pick({ id: true, since: true }),
    run: async (ctx, args) => {
      const r = await ctx.relay.call('thread/get', args);
      return { text: `thread #${r.threadId}${r.more ? ' (more: call again with since)' : ''}\n${messageLines(r.messages, 'no messages')}`, data: r };
    },
  }),

  search_messages: tool({
    title: 'Search messages',
    description:
      'Full-text search of the subjects and bodies of messages in this agent\'s inbox, best match first, each hit with a snippet (matched words between « and »). Every word must match; "a phrase" in quotes, a trailing * for a prefix. Filters: channel, from (sender), to (target), since (a message id). With more, call again with after = nextCursor.',
    input: message.MessageSearchParamsSchema.pick({ query: true, channel: true, from: true, to: true, since: true, limit: true, after: true }),
    run: async (ctx, args) => {
      const r = await ctx.relay.call('message/search', args);
      const lines = r.hits.map((h) => `#${h.message.id} from ${h.message.from} to ${h.message.to}${h.message.subject ? ` [${h.message.subject}]` : ''}: ${h.snippet}`);
      const more = r.more && r.nextCursor ? `\n(more: call again with after "${r.nextCursor}")` : '';
      return { text: `${lines.length ? lines.join('\n') : 'no matches'}${more}`, data: r };
    },
  }),

  claim: tool({
    title: 'Claim work',
    description: 'Claim a task (taskId) or a claimable message (messageId): exactly one agent gets it; a conflict names who has it. The claim token is kept for update_task and release_task.',
    input: z.strictObject({ taskId: IdSchema.optional(), messageId: IdSchema.optional() }),
    run: async (ctx, { taskId, messageId }) => {
      if ((taskId === undefined) === (messageId === undefined)) throw new ToolInputError('give exactly one of taskId (a task id) or messageId (a claimable message id)');
      const r = taskId !== undefined ? await ctx.relay.call('task/claim', { id: taskId }) : await ctx.relay.call('message/claim', { id: messageId! });
      ctx.claims.set(r.task.id, r.claimToken);
      return { text: `claimed ${taskLine(r.task)} (claim token ${r.claimToken})`, data: r };
    },
  }),

  update_task: tool({
    title: 'Report on a task',
    description: 'Report progress (0–100), a note, or a new status (in_progress, blocked, done, failed, canceled) on a task this agent claimed.',
    input: task.TaskUpdateParamsSchema.pick({ id: true, status: true, progress: true, note: true }),
    run: async (ctx, args) => {
      const claimToken = ctx.claims.get(args.id);
      const r = await ctx.relay.call('task/update', { ...args, ...(claimToken !== undefined ? { claimToken } : {}) });
      return { text: `updated ${taskLine(r.task)}`, data: r };
    },
  }),

  release_task: tool({
    title: 'Give a task back',
    description: 'Give back a task this agent claimed, with an optional note: it is open again and announced to its target.',
    input: task.TaskReleaseParamsSchema.pick({ id: true, note: true }),
    run: async (ctx, args) => {
      const claimToken = ctx.claims.get(args.id);
      const r = await ctx.relay.call('task/release', { ...args, ...(claimToken !== undefined ? { claimToken } : {}) });
      return { text: `released ${taskLine(r.task)}`, data: r };
    },
  }),

  lease_acquire: tool({
    title: 'Reserve files or resources',
    description:
      'Take a lease on resources others should keep off while you work: paths and globs (src/auth/**, src/*.ts; a folder holds everything beneath it) or names (db:migrations). All or none; exclusive (default) or shared; it ends after ttlMs (default 5 min) unless renewed, and when this agent goes offline. A conflict names the holder, its reason and when it expires.',
    input: lease.LeaseAcquireParamsSchema.pick({ resources: true, mode: true, ttlMs: true, reason: true }),
    run: async (ctx, args) => {
      const r = await ctx.relay.call('lease/acquire', args);
      ctx.leases.set(r.lease.id, r.token);
      return { text: `acquired ${leaseLine(r.lease)}`, data: r };
    },
  }),

  lease_renew: tool({
    title: 'Renew a lease',
    description: 'Extend a lease this agent holds, by ttlMs from now (default its own TTL); the lease gets a new fencing token.',
    input: lease.LeaseRenewParamsSchema.pick({ leaseId: true, ttlMs: true }),
    run: async (ctx, args) => {
      const token = leaseToken(ctx, args.leaseId);
      const r = await ctx.relay.call('lease/renew', { ...args, token });
      ctx.leases.set(r.lease.id, r.token);
      return { text: `renewed ${leaseLine(r.lease)}`, data: r };
    },
  }),

  lease_release: tool({
    title: 'Release a lease',
    description: 'End a lease this agent holds, so others may take its resources.',
    input: lease.LeaseReleaseParamsSchema.pick({ leaseId: true }),
    run: async (ctx, args) => {
      const token = leaseToken(ctx, args.leaseId);
      const r = await ctx.relay.call('lease/release', { leaseId: args.leaseId, token });
      return { text: `released lease #${r.lease.id}`, data: r };
    },
  }),

  lease_list: tool({
    title: 'Leases in force',
    description: 'Leases in force now, with holder, mode, resources, reason and expiry: of one holder, or those overlapping a resource (check before you edit).',
    input: lease.LeaseListParamsSchema.pick({ holder: true, resource: true, limit: true, since: true }),
    run: async (ctx, args) => {
      const r = await ctx.relay.call('lease/list', args);
      return { text: r.leases.length ? r.leases.map(leaseLine).join('\n') : 'no leases in force', data: r };
    },
  }),
};
