import { RelayError } from '../../protocol/index.js';
import type { Domain } from './domain.js';
import type { Caller } from './ports.js';

export type { Caller } from './ports.js';

/** A method call as handlers see it: the caller, and the domain it acts on. */
export interface CallContext extends Caller {
  readonly domain: Domain;
}

/** The calling agent's id, or -32004 when the call needs an identity it does not have. */
export function requireAgent(ctx: CallContext): string {
  if (ctx.agentId && ctx.domain.agents.has(ctx.agentId)) return ctx.agentId;
  throw new RelayError('notRegistered', 'not registered: call agent/register first (or pass agentId and agentToken over HTTP)');
}
