import type { Driver, Endpoint, Publisher, SubHandle } from './drivers.js';
import { FastWs, intAt, stampInBytes } from './fast-ws.js';
import type { Stamp } from './payload.js';
import { RpcWs } from './rpc-ws.js';

const NOTE = Buffer.from('{"jsonrpc":"2.0","method":"message/new"');
const ID_FIRST = Buffer.from('"message":{"id":');
const ID_LATER = Buffer.from(',"id":');

/** The message id (the cursor) of a message/new frame: first key of a backlog row, last of a live insert. */
function messageId(buf: Buffer, start: number, end: number): number {
  let i = buf.indexOf(ID_FIRST, start);
  if (i >= 0 && i < end) return intAt(buf, i + ID_FIRST.length);
  i = buf.indexOf(ID_LATER, start);
  return i >= 0 && i < end ? intAt(buf, i + ID_LATER.length) : 0;
}

function isNote(buf: Buffer, start: number): boolean {
  return buf.compare(NOTE, 0, NOTE.length, start, start + NOTE.length) === 0;
}

/**
 * A relay subscriber is an agent with the run's tag; the publisher is an observer sending to
 * `tag:TOPIC`. A subscriber the relay cuts (slow consumer, 4000–4499) resumes by cursor, as the
 * client library does, so a backlog it missed arrives late (and counts as latency), never lost.
 */
export function relaySubscribe(ep: Endpoint, index: number, onStamp: (s: Stamp) => void): Promise<SubHandle> {
  const id = `sub-${ep.topic}-${index}`;
  let token: string | undefined;
  let cursor = 0;
  let closed = false;
  let reconnects = 0;
  let ws: FastWs | undefined;
  const connect = async (): Promise<void> => {
    const c = await FastWs.connect(ep.url!);
    ws = c;
    let registered: ((r: { agentToken: string }) => void) | null = null;
    let failed: ((e: Error) => void) | null = null;
    c.onText = (buf, start, end) => {
      if (isNote(buf, start)) {
        const s = stampInBytes(buf, start, end);
        if (!s) return;
        const mid = messageId(buf, start, end);
        if (mid > cursor) cursor = mid;
        onStamp(s);
        return;
      }
      const msg = JSON.parse(buf.toString('utf8', start, end)) as { id?: number; result?: { agentToken: string }; error?: { message: string } };
      if (msg.id === 1) {
        if (msg.result) registered?.(msg.result);
        else failed?.(new Error(msg.error?.message ?? 'register failed'));
      }
    };
    c.onClose = (code) => {
      failed?.(new Error(`closed ${code}`));
      if (closed || code < 4000 || code >= 4500) return;
      reconnects++;
      setTimeout(() => connect().catch(() => {}), 50);
    };
    const params = token ? { id, tags: [ep.topic], agentToken: token, since: cursor } : { id, tags: [ep.topic] };
    const r = await new Promise<{ agentToken: string }>((resolve, reject) => {
      registered = resolve;
      failed = reject;
      c.sendText(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'agent/register', params }));
    });
    token = r.agentToken;
  };
  return connect().then(() => ({
    close: async () => {
      closed = true;
      await ws?.close();
    },
    reconnects: () => reconnects,
  }));
}

export async function relayPublisher(ep: Endpoint): Promise<Publisher> {
  const rpc = await RpcWs.connect(ep.url!);
  const to = ep.target ?? `tag:${ep.topic}`;
  return {
    send: (body) => rpc.call('message/send', { to, body, from: 'ext:bench-sender' }),
    // FastWs already writes every frame of a tick together.
    batch: (fn) => fn(),
    close: () => rpc.close(),
  };
}

export const relayDriver: Driver = { subscribe: relaySubscribe, publisher: relayPublisher };
