import { z } from 'zod';
import { CallbackDeliverySchema, ChannelSchema, CursorSchema, EventSchema, IdSchema, LimitSchema, MetaParamSchema, TargetSchema, TaskSchema, TaskStatusSchema } from '../common.js';
import { LIMITS } from '../limits.js';
import { EXTERNAL_SENDER_PATTERN, EXTERNAL_SENDER_RULE } from '../senders.js';
import { IdentityFields } from './identity.js';

export const TaskCreateParamsSchema = z.strictObject({
  title: z.string().min(1).max(512),
  /** Who is offered the task: any target form. */
  target: TargetSchema,
  body: z.string().max(LIMITS.maxBodyChars).optional(),
  channel: ChannelSchema.optional(),
  /** With `source`, identifies one piece of work: a second create while it is open only counts an occurrence. */
  dedupeKey: z.string().min(1).max(256).optional(),
  /** Where the work came from; defaults to the caller (agent id, or `ext:NAME` from `from`). A configured integration's name is refused: it is its ingress's. */
  source: z.string().min(1).max(128).optional(),
  callbackUrl: z
    .url({ protocol: /^https?$/ })
    .max(2048)
    .optional(),
  meta: MetaParamSchema.optional(),
  /** `resolve` closes the open task with this dedupeKey as done instead of creating one. */
  action: z.enum(['trigger', 'resolve']).optional(),
  /** Creator name for observers, as in message/send. */
  from: z.string().regex(EXTERNAL_SENDER_PATTERN, EXTERNAL_SENDER_RULE).max(128).optional(),
  ...IdentityFields,
});
export const TaskCreateResultSchema = z.object({ task: TaskSchema, created: z.boolean() });

export const TaskClaimParamsSchema = z.strictObject({ id: IdSchema, ...IdentityFields });
export const TaskClaimResultSchema = z.object({
  task: TaskSchema,
  /** Present this on task/update and task/release; it goes stale when the task is claimed again. */
  claimToken: z.number().int(),
});

export const TaskUpdateParamsSchema = z.strictObject({
  id: IdSchema,
  claimToken: z.number().int().optional(),
  status: TaskStatusSchema.exclude(['open', 'claimed']).optional(),
  progress: z.number().int().min(0).max(100).optional(),
  note: z.string().max(4096).optional(),
  ...IdentityFields,
});
export const TaskUpdateResultSchema = z.object({ task: TaskSchema });

export const TaskReleaseParamsSchema = z.strictObject({
  id: IdSchema,
  claimToken: z.number().int().optional(),
  note: z.string().max(4096).optional(),
  ...IdentityFields,
});
export const TaskReleaseResultSchema = z.object({ task: TaskSchema });

export const TaskListParamsSchema = z.strictObject({
  status: TaskStatusSchema.optional(),
  target: z.string().max(200).optional(),
  channel: z.string().max(64).optional(),
  claimedBy: z.string().max(128).optional(),
  limit: LimitSchema.optional(),
  /** Only tasks with an id above this. */
  since: CursorSchema.optional(),
  ...IdentityFields,
});
export const TaskListResultSchema = z.object({
  tasks: z.array(TaskSchema),
  /** True when the page stopped at the result size budget: list again with `since` = the last id. */
  more: z.boolean().optional(),
});

export const TaskGetParamsSchema = z.strictObject({
  id: IdSchema,
  /** Only the task's events with an id above this (the last event id of the previous page, when `more`). */
  since: CursorSchema.optional(),
  ...IdentityFields,
});
export const TaskGetResultSchema = z.object({
  task: TaskSchema,
  events: z.array(EventSchema),
  /** Callback deliveries of the task's events, dead letters included. */
  callbacks: z.array(CallbackDeliverySchema),
  /** True when the events stopped at 1000 or the result size budget: get again with `since` = the last event id. */
  more: z.boolean().optional(),
});

export type TaskCreateParams = z.infer<typeof TaskCreateParamsSchema>;
export type TaskCreateResult = z.infer<typeof TaskCreateResultSchema>;
export type TaskClaimParams = z.infer<typeof TaskClaimParamsSchema>;
export type TaskClaimResult = z.infer<typeof TaskClaimResultSchema>;
export type TaskUpdateParams = z.infer<typeof TaskUpdateParamsSchema>;
export type TaskUpdateResult = z.infer<typeof TaskUpdateResultSchema>;
export type TaskReleaseParams = z.infer<typeof TaskReleaseParamsSchema>;
export type TaskReleaseResult = z.infer<typeof TaskReleaseResultSchema>;
export type TaskListParams = z.infer<typeof TaskListParamsSchema>;
export type TaskListResult = z.infer<typeof TaskListResultSchema>;
export type TaskGetParams = z.infer<typeof TaskGetParamsSchema>;
export type TaskGetResult = z.infer<typeof TaskGetResultSchema>;
