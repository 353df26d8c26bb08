import { RelayError, type Message } from '../../protocol/index.js';
import type { Domain } from './domain.js';
import type { Session } from './ports.js';
import type { ListFilter } from './store-port.js';

/**
 * Rows read per backlog page. Small, because a backlog stops at the session's backpressure limit:
 * a page of 1,000 large messages read tens of megabytes to send one.
 */
const BACKLOG_PAGE = 100;

/** The agent's messages after `since`; with `unread`, those it has not read. */
export async function inbox(d: Domain, agentId: string, f: ListFilter & { unread: boolean }): Promise<Message[]> {
  const floor = d.agents.inboxFloor(agentId);
  return f.unread
    ? d.store.messages.inbox(agentId, { ...f, floor, unread: true, readThrough: await d.store.deliveries.readThrough(agentId) })
    : d.store.messages.inbox(agentId, { ...f, floor, unread: false });
}

/**
 * Push the committed messages in (since, upTo] to a session that has just attached, in id order,
 * before its live pushes: the agent's inbox, or every message for an observer (agentId null).
 * Stops once the session closes: a write past its backpressure limit cuts it, and the client
 * resumes from the last id it got.
 */
export async function replayBacklog(d: Domain, session: Session, agentId: string | null, since: number, upTo: number): Promise<void> {
  let cursor = since;
  while (!session.closed && cursor < upTo) {
    const filter = { since: cursor, limit: BACKLOG_PAGE, channel: null, threadId: null };
    const page = await (agentId ? inbox(d, agentId, { ...filter, unread: false }) : d.store.messages.all(filter));
    const inRange = page.filter((m) => m.id <= upTo);
    if (inRange.length === 0) break;
    d.notifier.backlog(session, inRange, agentId);
    cursor = inRange.at(-1)!.id;
    if (page.length < BACKLOG_PAGE) break;
  }
}

/** Enforce the retention floor: a cursor below what is still held must resync, never skip. */
export async function checkCursor(d: Domain, since: number | undefined, field = 'since'): Promise<void> {
  if (since === undefined) return;
  const floor = await d.store.prunedThrough();
  if (since < floor) {
    throw new RelayError('cursorExpired', `${field}: cursor ${since} is below the retention floor ${floor}; resync with message/list`, { floor });
  }
}
