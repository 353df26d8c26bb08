import { RelayError } from '../../protocol/index.js';
import type { Caller } from './context.js';

/**
 * THE read rule (PROTOCOL.md "Who reads what"), for message/list, GET /api/messages, the HTTP inbox
 * and the agent SSE stream alike: an agent's inbox (its messages, unread state, and polls that count
 * as hand-over) is read only by that agent, proven by its registered connection or its agentToken.
 * The global feed (no agentId) is open to every admitted caller. Returns the inbox's agent id.
 */
export function inboxReader(ctx: Caller, agentId: string): string {
  if (ctx.agentId === agentId) return agentId;
  // Unknown ids get the same answer as foreign ones: the refusal is no hint of which ids exist.
  throw new RelayError(
    'unauthorized',
    `unauthorized: the inbox of agent ${agentId} is read only with its own credential (its registered connection, or agentId + agentToken; X-Agent-Token over HTTP)${ctx.agentId ? `, not as ${ctx.agentId}` : ''}; without agentId message/list is the global feed`,
  );
}

/**
 * Whose messages message/search looks through: what message/list without agentId shows the caller.
 * An agent (registered connection, or agentId + agentToken) searches its own inbox; an observer
 * searches the global feed (null). A search never finds a message the caller could not list.
 */
export function searchScope(ctx: Caller): string | null {
  return ctx.agentId ?? null;
}
