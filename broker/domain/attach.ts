import type { Caller } from './context.js';
import { checkCursor, replayBacklog } from './delivery.js';
import type { Domain } from './domain.js';
import type { AttachRequest, Session } from './ports.js';
import { noteDisconnected, registered } from './presence.js';
import { inboxReader } from './read-rule.js';

/** Rows read per event backlog page (events are small; the page stops at the session's backpressure too). */
const EVENT_PAGE = 500;

/**
 * The one attach, for agent/register, stream/subscribe and SSE: bind the agent and follow the
 * topics, replay what the session missed (bounded: it stops once a write is refused and the
 * session is cut, the client resumes by cursor), then go live. The binding comes first and the
 * live frames wait for the backlog (Notifier.hold), so nothing committed meanwhile slips between
 * the backlog and the live pushes however long the reads take: the backlog covers what was
 * published when the session was bound, the live feed everything after. `upTo` (register: the
 * newest message id its commit saw) raises that point when the commit's own messages are not
 * published yet; it never lowers it: on a store with a change feed, other nodes' commits after
 * the register's may be published before its answer runs, and with no session bound then, only
 * the backlog can bring them (a CI-style cluster run lost one message to a reconnecting client so).
 */
export async function attach(d: Domain, session: Session, req: AttachRequest, upTo?: number): Promise<{ cursor: number; eventCursor: number }> {
  const published = d.notifier.publishedThrough();
  const cursor = Math.max(upTo ?? 0, published.messageId);
  const eventCursor = published.eventId;
  d.sessions.add(session);
  const asAgent = req.agentId !== null && d.sessions.attach(session, req.agentId);
  d.sessions.subscribe(session, req.topics);
  d.notifier.hold(session);
  try {
    if (asAgent && req.agentId !== null) {
      const recorded = await d.notifier.pushes.recordedThrough(req.agentId);
      if (!session.closed) d.notifier.pushes.attached(req.agentId, session, req.since ?? cursor, recorded);
      if (req.since !== undefined) await replayBacklog(d, session, req.agentId, req.since, cursor);
    } else if (req.agentId === null && req.since !== undefined && req.topics.includes('messages')) {
      await replayBacklog(d, session, null, req.since, cursor);
    }
    if (req.eventsSince !== undefined && req.topics.includes('events')) await replayEvents(d, session, req.eventsSince, eventCursor);
  } finally {
    d.notifier.release(session);
  }
  return { cursor, eventCursor };
}

/** The refusals a stream opened by a caller (SSE) meets: an expired cursor, another agent's inbox. */
export async function checkAttach(d: Domain, req: AttachRequest, caller: Caller): Promise<void> {
  await checkCursor(d, req.since);
  if (req.agentId !== null) inboxReader(caller, req.agentId);
}

/**
 * attach for a stream opened by a caller (SSE): refused as checkAttach says, else attached. An
 * agent's stream is its connection, so it is bound to this node as a registration's socket is:
 * every node shows the agent connected and counts it present, and a newer connection of the agent
 * on another node closes this one (4502).
 */
export async function attachStream(d: Domain, session: Session, req: AttachRequest, caller: Caller): Promise<void> {
  await checkAttach(d, req, caller);
  await attach(d, session, req);
  if (req.agentId !== null && d.sessions.forAgent(req.agentId) === session) await bindStream(d, session, req.agentId);
}

async function bindStream(d: Domain, session: Session, agentId: string): Promise<void> {
  const node = d.bindings.self;
  const { epoch } = await d.queue.apply({ op: 'session.bind', at: d.now(), agentId, node }, (o) => {
    if (!o.ok) throw new Error(`session.bind refused (${o.refused})`);
    return o.value.session;
  });
  registered(d, session, agentId, epoch);
  // Gone before its binding committed: detach had no epoch to unbind, so the binding is undone here.
  if (session.closed) d.queue.defer({ op: 'session.unbind', at: d.now(), agentId, node, epoch });
}

/** The session is gone: forget it; an agent it spoke for is now disconnected (its TTL counts from here). */
export function detach(d: Domain, session: Session): string | null {
  const agentId = d.sessions.remove(session);
  if (agentId) noteDisconnected(d, agentId, session);
  return agentId;
}

async function replayEvents(d: Domain, session: Session, since: number, upTo: number): Promise<void> {
  let cursor = since;
  while (!session.closed && cursor < upTo) {
    const page = await d.store.events.list({ since: cursor, kind: null, taskId: null, limit: EVENT_PAGE });
    for (const event of page) {
      if (event.id > upTo || !d.notifier.sendTo(session, 'event/new', { event })) return;
      cursor = event.id;
    }
    if (page.length < EVENT_PAGE) return;
  }
}
