import type { Message } from '../../protocol/index.js';
import { parseObject } from './json.js';

/** A `messages` row as SQLite returns it. */
export interface MessageRow {
  id: number;
  from_id: string;
  to_target: string;
  channel: string | null;
  subject: string | null;
  body: string;
  reply_to: number | null;
  thread_id: number;
  claimable: number;
  task_id: number | null;
  created_at: number;
  meta: string;
}

export function messageFromRow(r: MessageRow): Message {
  return {
    id: r.id,
    from: r.from_id,
    to: r.to_target,
    channel: r.channel,
    subject: r.subject,
    body: r.body,
    replyTo: r.reply_to,
    threadId: r.thread_id,
    claimable: r.claimable === 1,
    taskId: r.task_id,
    createdAt: r.created_at,
    meta: parseObject(r.meta),
  };
}
