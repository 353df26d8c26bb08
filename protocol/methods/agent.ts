import { z } from 'zod';
import { AgentIdSchema, AgentSchema, AgentStatusSchema, ChannelSchema, CursorSchema, LimitSchema, MetaParamSchema, NameListSchema } from '../common.js';
import { IdentityFields } from './identity.js';

const Text = z.string().max(512);

export const AgentRegisterParamsSchema = z.strictObject({
  /** Stable id; generated from host, client, rig and cwd when absent. */
  id: AgentIdSchema.optional(),
  /** Token from an earlier registration of the same id; required to take over an existing id. */
  agentToken: z.string().min(1).max(256).optional(),
  /** Human label; defaults to the id. */
  label: z.string().min(1).max(128).optional(),
  tags: NameListSchema.optional(),
  capabilities: NameListSchema.optional(),
  /** Channels this agent hears fan-out on; empty means all channels. */
  channels: z.array(ChannelSchema).max(64).optional(),
  client: Text.optional(),
  host: Text.optional(),
  cwd: z.string().max(4096).optional(),
  rig: Text.optional(),
  ready: z.boolean().optional(),
  /** System agents are never pruned; `true` is refused unless the operator lists the id in AGENT_RELAY_SYSTEM_AGENTS. */
  system: z.boolean().optional(),
  meta: MetaParamSchema.optional(),
  /** Last message id seen; missed messages after it are pushed before live ones. */
  since: CursorSchema.optional(),
});
export const AgentRegisterResultSchema = z.object({
  agent: AgentSchema,
  agentToken: z.string(),
  /** Highest message id committed when the registration answered. */
  cursor: CursorSchema,
  /** True when this call created the agent; false when it resumed an existing one. */
  created: z.boolean(),
});

export const AgentUpdateParamsSchema = z.strictObject({
  /** Agent to update; defaults to the caller. Without the agent's own token only `label` may change. */
  id: AgentIdSchema.optional(),
  label: z.string().min(1).max(128).optional(),
  tags: NameListSchema.optional(),
  capabilities: NameListSchema.optional(),
  channels: z.array(ChannelSchema).max(64).optional(),
  /** `offline` leaves: claimed work is released at once. */
  status: AgentStatusSchema.optional(),
  ready: z.boolean().optional(),
  meta: MetaParamSchema.optional(),
  ...IdentityFields,
});
export const AgentUpdateResultSchema = z.object({ agent: AgentSchema });

export const AgentHeartbeatParamsSchema = z.strictObject({
  status: AgentStatusSchema.optional(),
  ready: z.boolean().optional(),
  ...IdentityFields,
});
export const AgentHeartbeatResultSchema = z.object({ agent: AgentSchema });

export const AgentListParamsSchema = z.strictObject({
  status: AgentStatusSchema.optional(),
  tag: z.string().max(64).optional(),
  capability: z.string().max(64).optional(),
  /** Only agents whose id sorts after this one: the `nextCursor` of the previous page. */
  after: AgentIdSchema.optional(),
  limit: LimitSchema.optional(),
  ...IdentityFields,
});
export const AgentListResultSchema = z.object({
  /** In id order. */
  agents: z.array(AgentSchema),
  /** Present when more agents follow: pass it as `after` for the next page. */
  nextCursor: AgentIdSchema.optional(),
});

export type AgentRegisterParams = z.infer<typeof AgentRegisterParamsSchema>;
export type AgentRegisterResult = z.infer<typeof AgentRegisterResultSchema>;
export type AgentUpdateParams = z.infer<typeof AgentUpdateParamsSchema>;
export type AgentUpdateResult = z.infer<typeof AgentUpdateResultSchema>;
export type AgentHeartbeatParams = z.infer<typeof AgentHeartbeatParamsSchema>;
export type AgentHeartbeatResult = z.infer<typeof AgentHeartbeatResultSchema>;
export type AgentListParams = z.infer<typeof AgentListParamsSchema>;
export type AgentListResult = z.infer<typeof AgentListResultSchema>;
