import { RelayError, type MessageListResult } from '../../protocol/index.js';
import type { Caller, HttpExchange, RelayEdge } from '../../broker/domain/ports.js';
import { sendError, sendJson } from './respond.js';
import { bool, num } from './rest.js';

export const MAX_WAIT_SECONDS = 60;

/**
 * Long-poll waiters by agent. A waiter holds only a callback and a timer: no database read stays
 * open across the wait, and nothing spins. A commit of a message for the agent wakes its waiters.
 */
export class InboxWaiters {
  private readonly byAgent = new Map<string, Set<() => void>>();

  constructor(relay: Pick<RelayEdge, 'onMessage'>) {
    relay.onMessage((_message, recipients) => {
      for (const agentId of recipients) this.wake(agentId);
    });
  }

  /** Wait for the next message to `agentId`; returns a cancel function. */
  wait(agentId: string, fn: () => void): () => void {
    let set = this.byAgent.get(agentId);
    if (!set) this.byAgent.set(agentId, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.byAgent.get(agentId) === set) this.byAgent.delete(agentId);
    };
  }

  get size(): number {
    let n = 0;
    for (const s of this.byAgent.values()) n += s.size;
    return n;
  }

  private wake(agentId: string): void {
    const set = this.byAgent.get(agentId);
    if (!set) return;
    this.byAgent.delete(agentId);
    for (const fn of set) fn();
  }
}

/** GET /api/agents/:id/inbox?since=&unread=&limit=&wait= — message/list, optionally long-polled. */
export async function handleInbox(ex: HttpExchange, caller: Caller, agentId: string, relay: RelayEdge, waiters: InboxWaiters): Promise<void> {
  try {
    // Who may read it is message/list's rule (broker/domain/read-rule.ts), checked by the first poll.
    const wait = num(ex.query.get('wait')) ?? 0;
    if (typeof wait !== 'number' || wait < 0 || wait > MAX_WAIT_SECONDS) {
      throw new RelayError('invalidParams', `invalid params: wait: must be whole seconds from 0 to ${MAX_WAIT_SECONDS}`);
    }
    const params: Record<string, unknown> = { agentId };
    for (const [key, value] of [
      ['since', num(ex.query.get('since'))],
      ['limit', num(ex.query.get('limit'))],
      ['unread', bool(ex.query.get('unread'))],
      ['channel', ex.query.get('channel') ?? undefined],
    ] as const) {
      if (value !== undefined) params[key] = value;
    }
    const poll = () => relay.call('message/list', params, caller) as Promise<MessageListResult>;
    const deadline = Date.now() + wait * 1000;
    let gone = false;
    let stopWaiting = () => {};
    ex.onAbort(() => {
      gone = true;
      stopWaiting();
    });
    // Armed before every poll: a message published while the poll reads wakes it, one published
    // before is in what it reads. Nothing falls between.
    let wake = armWake(waiters, agentId);
    try {
      let result = await poll();
      while (result.messages.length === 0 && !gone && Date.now() < deadline) {
        const woke = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), deadline - Date.now());
          stopWaiting = () => {
            clearTimeout(timer);
            resolve(false);
          };
          void wake.woken.then(() => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        wake.cancel();
        if (!woke) break;
        wake = armWake(waiters, agentId);
        result = await poll();
      }
      sendJson(ex, 200, result);
    } finally {
      wake.cancel();
    }
  } catch (err) {
    sendError(ex, err);
  }
}

/** The next message published to the agent (`woken`), until cancelled. */
function armWake(waiters: InboxWaiters, agentId: string): { woken: Promise<void>; cancel: () => void } {
  let cancel = () => {};
  const woken = new Promise<void>((resolve) => {
    cancel = waiters.wait(agentId, resolve);
  });
  return { woken, cancel };
}
