import type { Agent, Lease, Message, Task } from '../../clients/index.js';

/** How much of a body a listing shows: the model asks for the whole message with read_message. */
const PREVIEW_CHARS = 240;

function preview(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > PREVIEW_CHARS ? `${flat.slice(0, PREVIEW_CHARS)}…` : flat;
}

export function messageLine(m: Message): string {
  const subject = m.subject ? ` [${m.subject}]` : '';
  const thread = m.threadId !== m.id ? ` (thread #${m.threadId})` : '';
  const claim = m.taskId ? ` claimable as task #${m.taskId}` : '';
  return `#${m.id} ${new Date(m.createdAt).toISOString()} from ${m.from} to ${m.to}${subject}${thread}${claim}: ${preview(m.body)}`;
}

export function messageLines(messages: readonly Message[], none: string): string {
  return messages.length ? messages.map(messageLine).join('\n') : none;
}

export function agentLine(a: Agent): string {
  const tags = a.tags.length ? ` tags ${a.tags.join(',')}` : '';
  const caps = a.capabilities.length ? ` caps ${a.capabilities.join(',')}` : '';
  return `${a.id} "${a.label}" ${a.status}${a.ready ? '' : ' (not ready)'}${tags}${caps}`;
}

export function taskLine(t: Task): string {
  const owner = t.claimedBy ? ` claimed by ${t.claimedBy}` : '';
  const progress = t.progress > 0 ? ` ${t.progress}%` : '';
  return `task #${t.id} "${t.title}" ${t.status}${progress}${owner}`;
}

export function leaseLine(l: Lease): string {
  const reason = l.reason ? ` (${l.reason})` : '';
  return `lease #${l.id} ${l.mode} ${l.resources.join(', ')} held by ${l.agentId}${reason} until ${new Date(l.expiresAt).toISOString()}`;
}
