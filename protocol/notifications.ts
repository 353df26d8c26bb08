import { z } from 'zod';
import { AgentSummarySchema, EventSchema, LeaseSchema, MessageSchema, TaskSchema } from './common.js';

/** Every notification is sent only after the change it reports has been committed. */
export const NOTIFICATIONS = {
  /** To each recipient (ordered by id per recipient), and to observers subscribed to `messages`. */
  'message/new': z.object({ message: MessageSchema }),
  /** To the task's owner and to observers subscribed to `tasks`. */
  'task/updated': z.object({ task: TaskSchema, event: EventSchema }),
  /** To observers subscribed to `agents`: the agent without `meta`, which can be large (agent/list has it). */
  'agent/updated': z.object({ agent: AgentSummarySchema }),
  /** To the lease's holder and to observers subscribed to `leases`: the lease right after the event. */
  'lease/updated': z.object({ lease: LeaseSchema, event: EventSchema }),
  /** To observers subscribed to `events`. */
  'event/new': z.object({ event: EventSchema }),
} as const;

export type NotificationName = keyof typeof NOTIFICATIONS;
export type NotificationParams<N extends NotificationName> = z.infer<(typeof NOTIFICATIONS)[N]>;
export type MessageNewParams = NotificationParams<'message/new'>;
export type TaskUpdatedParams = NotificationParams<'task/updated'>;
export type AgentUpdatedParams = NotificationParams<'agent/updated'>;
export type EventNewParams = NotificationParams<'event/new'>;
export type LeaseUpdatedParams = NotificationParams<'lease/updated'>;
