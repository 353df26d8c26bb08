import { z } from 'zod';
import { AgentIdSchema } from '../common.js';

/**
 * Fields that name the calling agent on transports without a session (POST /rpc, REST).
 * On a WebSocket the registered connection is the identity and these may be omitted.
 */
export const IdentityFields = {
  /** The calling agent's id (HTTP only). */
  agentId: AgentIdSchema.optional(),
  /** The calling agent's token from agent/register (HTTP only). */
  agentToken: z.string().min(1).max(256).optional(),
};
