import type { z } from 'zod';
import * as agent from './methods/agent.js';
import * as event from './methods/event.js';
import * as lease from './methods/lease.js';
import * as message from './methods/message.js';
import * as task from './methods/task.js';

/**
 * Who may call a method. `agent`: a registered identity (the WebSocket's registration, or
 * agentId + agentToken over HTTP). `any`: agents and observers alike. `session`: needs a live
 * connection (WebSocket), so it is not offered over HTTP.
 */
export type MethodAuth = 'agent' | 'any' | 'session';

interface MethodSpec {
  params: z.ZodType;
  result: z.ZodType;
  auth: MethodAuth;
  /** Whether the method writes; writes share group commits. */
  writes: boolean;
  summary: string;
}

const spec = <P extends z.ZodType, R extends z.ZodType>(params: P, result: R, auth: MethodAuth, writes: boolean, summary: string) => ({ params, result, auth, writes, summary });

/** THE list of methods. Every transport and rpc.discover iterate this table; none keeps its own. */
export const METHODS = {
  'agent/register': spec(agent.AgentRegisterParamsSchema, agent.AgentRegisterResultSchema, 'any', true, 'Become an agent, or resume one with its token and a cursor.'),
  'agent/update': spec(agent.AgentUpdateParamsSchema, agent.AgentUpdateResultSchema, 'any', true, 'Change label, tags, capabilities, channels, status or readiness.'),
  'agent/heartbeat': spec(agent.AgentHeartbeatParamsSchema, agent.AgentHeartbeatResultSchema, 'agent', true, 'Keep the caller online.'),
  'agent/list': spec(agent.AgentListParamsSchema, agent.AgentListResultSchema, 'any', false, 'List agents.'),
  'message/send': spec(message.MessageSendParamsSchema, message.MessageSendResultSchema, 'any', true, 'Send a message to an agent, tag:, cap:, label: or broadcast.'),
  'message/list': spec(message.MessageListParamsSchema, message.MessageListResultSchema, 'any', false, 'List an inbox (or all messages, for observers) by cursor.'),
  'message/search': spec(message.MessageSearchParamsSchema, message.MessageSearchResultSchema, 'any', false, 'Find messages by words in subject and body, ranked, with snippets.'),
  'message/read': spec(message.MessageReadParamsSchema, message.MessageReadResultSchema, 'agent', true, "Mark messages read in the caller's inbox."),
  'message/get': spec(message.MessageGetParamsSchema, message.MessageGetResultSchema, 'any', false, 'One message with its per-recipient delivery states.'),
  'message/ack': spec(message.MessageAckParamsSchema, message.MessageAckResultSchema, 'agent', true, 'Confirm a message reached the agent session (injected) or was read.'),
  'message/claim': spec(message.MessageClaimParamsSchema, message.MessageClaimResultSchema, 'agent', true, "Claim a claimable message's task."),
  'thread/get': spec(message.ThreadGetParamsSchema, message.ThreadGetResultSchema, 'any', false, 'Every message of the thread holding a message.'),
  'task/create': spec(task.TaskCreateParamsSchema, task.TaskCreateResultSchema, 'any', true, 'Create (or dedupe, or resolve) a task.'),
  'task/claim': spec(task.TaskClaimParamsSchema, task.TaskClaimResultSchema, 'agent', true, 'Atomically claim an open task.'),
  'task/update': spec(task.TaskUpdateParamsSchema, task.TaskUpdateResultSchema, 'any', true, 'Change status or progress of a claimed task (owner), or cancel.'),
  'task/release': spec(task.TaskReleaseParamsSchema, task.TaskReleaseResultSchema, 'agent', true, 'Give a claimed task back; it is announced again.'),
  'task/list': spec(task.TaskListParamsSchema, task.TaskListResultSchema, 'any', false, 'List tasks.'),
  'task/get': spec(task.TaskGetParamsSchema, task.TaskGetResultSchema, 'any', false, 'One task with its events.'),
  'lease/acquire': spec(lease.LeaseAcquireParamsSchema, lease.LeaseAcquireResultSchema, 'agent', true, 'Hold named resources (paths or SCHEME:NAME), all or none; answers a fencing token.'),
  'lease/renew': spec(lease.LeaseRenewParamsSchema, lease.LeaseRenewResultSchema, 'agent', true, "Extend the caller's lease; answers a new fencing token."),
  'lease/release': spec(lease.LeaseReleaseParamsSchema, lease.LeaseReleaseResultSchema, 'agent', true, "End the caller's lease."),
  'lease/list': spec(lease.LeaseListParamsSchema, lease.LeaseListResultSchema, 'any', false, 'Leases in force now.'),
  'event/list': spec(event.EventListParamsSchema, event.EventListResultSchema, 'any', false, 'The event log by cursor.'),
  'stream/subscribe': spec(event.StreamSubscribeParamsSchema, event.StreamSubscribeResultSchema, 'session', false, 'Live feed of messages, tasks, agents, leases and events.'),
} as const;

export type MethodName = keyof typeof METHODS;
export type MethodParams<M extends MethodName> = z.infer<(typeof METHODS)[M]['params']>;
export type MethodResult<M extends MethodName> = z.infer<(typeof METHODS)[M]['result']>;
/** Typed map for json-rpc-2.0's TypedJSONRPCClient and for our client. */
export type Methods = { [M in MethodName]: (params: MethodParams<M>) => MethodResult<M> };

export const DISCOVER_METHOD = 'rpc.discover';

export function isMethodName(name: string): name is MethodName {
  return Object.hasOwn(METHODS, name);
}
