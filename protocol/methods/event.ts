import { z } from 'zod';
import { CursorSchema, EventKindSchema, EventSchema, IdSchema, LimitSchema } from '../common.js';
import { IdentityFields } from './identity.js';

export const EventListParamsSchema = z.strictObject({
  /** Only events with an id above this. */
  since: CursorSchema.optional(),
  kind: EventKindSchema.optional(),
  taskId: IdSchema.optional(),
  limit: LimitSchema.optional(),
  ...IdentityFields,
});
export const EventListResultSchema = z.object({
  events: z.array(EventSchema),
  /** True when the page stopped at the result size budget: list again with `since` = the last id. */
  more: z.boolean().optional(),
});

export const StreamTopicSchema = z.enum(['messages', 'tasks', 'agents', 'events', 'leases']);

export const StreamSubscribeParamsSchema = z.strictObject({
  topics: z.array(StreamTopicSchema).min(1).max(5),
  /** Message cursor: messages after it are pushed before live ones. */
  since: CursorSchema.optional(),
  /** Event cursor: events after it are pushed before live ones. */
  eventsSince: CursorSchema.optional(),
});
export const StreamSubscribeResultSchema = z.object({
  /** Highest message id committed when the subscription answered. */
  cursor: CursorSchema,
  /** Highest event id committed when the subscription answered. */
  eventCursor: CursorSchema,
});

export type EventListParams = z.infer<typeof EventListParamsSchema>;
export type EventListResult = z.infer<typeof EventListResultSchema>;
export type StreamTopic = z.infer<typeof StreamTopicSchema>;
export type StreamSubscribeParams = z.infer<typeof StreamSubscribeParamsSchema>;
export type StreamSubscribeResult = z.infer<typeof StreamSubscribeResultSchema>;
