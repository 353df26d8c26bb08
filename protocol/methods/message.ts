import { z } from 'zod';
import { LIMITS } from '../limits.js';
import {
  AgentIdSchema,
  ChannelSchema,
  CursorSchema,
  DeliverySchema,
  DeliveryStateSchema,
  ExternalSenderSchema,
  IdSchema,
  LimitSchema,
  MessageSchema,
  MetaParamSchema,
  TargetSchema,
  TaskSchema,
} from '../common.js';
import { IdentityFields } from './identity.js';

export const WarningSchema = z.object({
  agentId: z.string(),
  /** `offline`, `not_ready`, or `no_recipients` (agentId empty). */
  reason: z.enum(['offline', 'not_ready', 'no_recipients']),
});

export const MessageSendParamsSchema = z.strictObject({
  to: TargetSchema,
  body: z.string().max(LIMITS.maxBodyChars),
  channel: ChannelSchema.optional(),
  subject: z.string().max(512).optional(),
  /** Id of the message this replies to; the reply joins that message's thread. */
  replyTo: IdSchema.optional(),
  /** Makes the message a task that exactly one agent can claim. */
  claimable: z.boolean().optional(),
  meta: MetaParamSchema.optional(),
  /** Sender name for observers (`ext:NAME`); agents always send as themselves. */
  from: ExternalSenderSchema.optional(),
  ...IdentityFields,
});
export const MessageSendResultSchema = z.object({
  message: MessageSchema,
  recipients: z.array(z.string()),
  warnings: z.array(WarningSchema),
  /** Present when the message is claimable. */
  task: TaskSchema.optional(),
});

export const MessageListParamsSchema = z.strictObject({
  /** Whose inbox; defaults to the caller, and only the agent itself may name it. Observers without it list every message. */
  agentId: AgentIdSchema.optional(),
  agentToken: IdentityFields.agentToken,
  /** Only messages with an id above this cursor. */
  since: CursorSchema.optional(),
  limit: LimitSchema.optional(),
  channel: ChannelSchema.optional(),
  threadId: IdSchema.optional(),
  /** Only messages this agent has not marked read. */
  unread: z.boolean().optional(),
});
export const MessageListResultSchema = z.object({
  messages: z.array(MessageSchema),
  /** Id of the last message returned, or the `since` given when none were. */
  cursor: CursorSchema,
  /** True when the page stopped at the result size budget: more may follow, list again with `since: cursor`. */
  more: z.boolean().optional(),
});

export const MessageSearchParamsSchema = z.strictObject({
  /** Words to find in subjects and bodies (PROTOCOL.md "Search" has the rule); every word must match. */
  query: z.string().min(1).max(LIMITS.maxSearchQueryChars),
  channel: ChannelSchema.optional(),
  /** Only messages from this sender (an agent id or `ext:NAME`). */
  from: z.string().min(1).max(128).optional(),
  /** Only messages sent to exactly this target (an agent id, `tag:NAME`, ..., `broadcast`). */
  to: TargetSchema.optional(),
  /** Only messages with an id above this cursor. */
  since: CursorSchema.optional(),
  limit: z.number().int().min(1).max(LIMITS.maxSearchLimit).optional(),
  /** The `nextCursor` of the previous page: the first page's query and filters hold, only `limit` is read. */
  after: z.string().min(1).max(128).optional(),
  ...IdentityFields,
});
export const SearchHitSchema = z.object({
  message: MessageSchema,
  /** Plain text around the best match, the matched words between « and », cuts marked with …. */
  snippet: z.string(),
});
export const MessageSearchResultSchema = z.object({
  /** Best match first (bm25, a subject word counting twice a body word); equally good ones newest first. */
  hits: z.array(SearchHitSchema),
  /** True when more hits may follow: search again with `after: nextCursor`. */
  more: z.boolean().optional(),
  nextCursor: z.string().optional(),
});

export const MessageReadParamsSchema = z.strictObject({
  ids: z.array(IdSchema).min(1).max(LIMITS.maxListLimit).optional(),
  /** Marks every message in the caller's inbox with an id up to and including this one. */
  upTo: IdSchema.optional(),
  ...IdentityFields,
});
export const MessageReadResultSchema = z.object({ marked: z.number().int() });

export const MessageGetParamsSchema = z.strictObject({ id: IdSchema, ...IdentityFields });
export const MessageGetResultSchema = z.object({ message: MessageSchema, deliveries: z.array(DeliverySchema) });

export const MessageAckParamsSchema = z.strictObject({
  id: IdSchema,
  state: DeliveryStateSchema.extract(['injected', 'read']),
  ...IdentityFields,
});
export const MessageAckResultSchema = z.object({ delivery: DeliverySchema });

export const MessageClaimParamsSchema = z.strictObject({ id: IdSchema, ...IdentityFields });
export const MessageClaimResultSchema = z.object({ task: TaskSchema, claimToken: z.number().int() });

export const ThreadGetParamsSchema = z.strictObject({
  /** Any message id in the thread. */
  id: IdSchema,
  /** Only the thread's messages with an id above this (the last id of the previous page, when `more`). */
  since: CursorSchema.optional(),
  ...IdentityFields,
});
export const ThreadGetResultSchema = z.object({
  threadId: IdSchema,
  messages: z.array(MessageSchema),
  /** True when the page stopped at 1000 messages or the result size budget: get again with `since` = the last id. */
  more: z.boolean().optional(),
});

export type Warning = z.infer<typeof WarningSchema>;
export type MessageSendParams = z.infer<typeof MessageSendParamsSchema>;
export type MessageSendResult = z.infer<typeof MessageSendResultSchema>;
export type MessageListParams = z.infer<typeof MessageListParamsSchema>;
export type MessageListResult = z.infer<typeof MessageListResultSchema>;
export type MessageSearchParams = z.infer<typeof MessageSearchParamsSchema>;
export type MessageSearchResult = z.infer<typeof MessageSearchResultSchema>;
export type SearchHit = z.infer<typeof SearchHitSchema>;
export type MessageReadParams = z.infer<typeof MessageReadParamsSchema>;
export type MessageReadResult = z.infer<typeof MessageReadResultSchema>;
export type MessageGetParams = z.infer<typeof MessageGetParamsSchema>;
export type MessageGetResult = z.infer<typeof MessageGetResultSchema>;
export type MessageAckParams = z.infer<typeof MessageAckParamsSchema>;
export type MessageAckResult = z.infer<typeof MessageAckResultSchema>;
export type MessageClaimParams = z.infer<typeof MessageClaimParamsSchema>;
export type MessageClaimResult = z.infer<typeof MessageClaimResultSchema>;
export type ThreadGetParams = z.infer<typeof ThreadGetParamsSchema>;
export type ThreadGetResult = z.infer<typeof ThreadGetResultSchema>;
