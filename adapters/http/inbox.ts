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
    const first = await poll();
    if (first.messages.length > 0 || wait === 0) return sendJson(ex, 200, first);

    const deadline = Date.now() + wait * 1000;
    await new Promise<void>((resolve) => {
      let cancel = () => {};
      const finish = (result: MessageListResult) => {
        clearTimeout(timer);
        cancel();
        sendJson(ex, 200, result);
        resolve();
      };
      const timer = setTimeout(() => finish({ messages: [], cursor: first.cursor }), deadline - Date.now());
      const arm = () => {
        cancel = waiters.wait(agentId, () => {
          poll().then(
            (r) => (r.messages.length > 0 ? finish(r) : arm()),
            (err: unknown) => {
              clearTimeout(timer);
              sendError(ex, err);
              resolve();
            },
          );
        });
      };
      arm();
      ex.onAbort(() => {
        clearTimeout(timer);
        cancel();
        resolve();
      });
    });
  } catch (err) {
    sendError(ex, err);
  }
}
