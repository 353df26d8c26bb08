import type { Caller } from './context.js';
import { checkCursor, replayBacklog } from './delivery.js';
import type { Domain } from './domain.js';
import type { AttachRequest, Session } from './ports.js';
import { noteDisconnected } from './presence.js';
import { inboxReader } from './read-rule.js';

/** Rows read per event backlog page (events are small; the page stops at the session's backpressure too). */
const EVENT_PAGE = 500;

/**
 * The one attach, for agent/register, stream/subscribe and SSE: bind the agent, replay what the
 * session missed (bounded: it stops once a write is refused and the session is cut, the client
 * resumes by cursor), then follow the topics. Runs in one synchronous step, so nothing committed
 * meanwhile slips between the backlog and the live pushes. `upTo` is the newest message id the
 * backlog covers: later ones are pushed live by their own commits.
 */
export function attach(d: Domain, session: Session, req: AttachRequest, upTo = d.store.messages.maxId()): { cursor: number; eventCursor: number } {
  d.sessions.add(session);
  if (req.agentId !== null && d.sessions.attach(session, req.agentId)) {
    d.notifier.pushes.attached(req.agentId, session, req.since ?? upTo);
    if (req.since !== undefined) replayBacklog(d, session, req.agentId, req.since, upTo);
  } else if (req.agentId === null && req.since !== undefined && req.topics.includes('messages')) {
    replayBacklog(d, session, null, req.since, upTo);
  }
  const eventCursor = d.store.events.maxId();
  if (req.eventsSince !== undefined && req.topics.includes('events')) replayEvents(d, session, req.eventsSince, eventCursor);
  d.sessions.subscribe(session, req.topics);
  return { cursor: upTo, eventCursor };
}

/** The refusals a stream opened by a caller (SSE) meets: an expired cursor, another agent's inbox. */
export function checkAttach(d: Domain, req: AttachRequest, caller: Caller): void {
  checkCursor(d, req.since);
  if (req.agentId !== null) inboxReader(caller, req.agentId);
}

/** attach for a stream opened by a caller (SSE): refused as checkAttach says, else attached. */
export function attachStream(d: Domain, session: Session, req: AttachRequest, caller: Caller): void {
  checkAttach(d, req, caller);
  attach(d, session, req);
}

/** The session is gone: forget it; an agent it spoke for is now disconnected (its TTL counts from here). */
export function detach(d: Domain, session: Session): string | null {
  const agentId = d.sessions.remove(session);
  if (agentId) noteDisconnected(d, agentId);
  return agentId;
}

function replayEvents(d: Domain, session: Session, since: number, upTo: number): void {
  let cursor = since;
  while (!session.closed && cursor < upTo) {
    const page = d.store.events.list({ since: cursor, kind: null, taskId: null, limit: EVENT_PAGE });
    for (const event of page) {
      if (event.id > upTo || !d.notifier.sendTo(session, 'event/new', { event })) return;
      cursor = event.id;
    }
    if (page.length < EVENT_PAGE) return;
  }
}
