import { RelayError, StreamTopicSchema, type StreamTopic } from '../../protocol/index.js';
import type { Caller, FrameMeta, HttpExchange, HttpStream, RelayEdge, SendResult, Session } from '../../broker/domain/ports.js';
import { sendError } from './respond.js';
import { num } from './rest.js';

let nextId = 1_000_000_000;

/** A Session written as Server-Sent Events: `id:` is the message cursor, `event:` the method. */
export class SseSession implements Session {
  readonly id = nextId++;
  readonly kind = 'sse' as const;
  agentId: string | null = null;
  readonly topics = new Set<StreamTopic>();

  constructor(
    private readonly stream: HttpStream,
    private readonly onClosed: () => void,
  ) {}

  get closed(): boolean {
    return this.stream.closed;
  }

  send(frame: string, meta?: FrameMeta): SendResult {
    const id = meta?.cursor !== undefined ? `id: ${meta.cursor}\n` : '';
    return this.stream.write(`${id}event: ${meta?.method ?? 'message'}\ndata: ${frame}\n\n`);
  }

  comment(text: string): void {
    this.stream.write(`: ${text}\n\n`);
  }

  close(): void {
    this.stream.end();
    this.onClosed();
  }
}

export interface SseOptions {
  keepAliveMs: number;
}

/**
 * GET /api/stream?agentId=&since=&topics= — the same notifications as the WebSocket, as SSE.
 * With agentId (and X-Agent-Token) it is that agent's live connection: its messages, resumed from
 * `since` or Last-Event-ID. Without, an observer feed of the chosen topics (default all).
 */
export async function handleStream(ex: HttpExchange, caller: Caller, relay: RelayEdge, opts: SseOptions): Promise<void> {
  let session: SseSession | null = null;
  let keepAlive: NodeJS.Timeout | undefined;
  let cleaned = false;
  const cleanup = () => {
    if (cleaned || !session) return;
    cleaned = true;
    clearInterval(keepAlive);
    relay.detach(session);
  };
  ex.onAbort(cleanup);
  try {
    const agentId = ex.query.get('agentId');
    // Last-Event-ID first: an EventSource reconnects with its original URL (and its since=) plus the header.
    const sinceRaw = num(ex.headers['last-event-id'] ?? null) ?? num(ex.query.get('since'));
    if (sinceRaw !== undefined && (typeof sinceRaw !== 'number' || sinceRaw < 0)) throw new RelayError('invalidParams', 'invalid params: since: must be a message id');
    const since = sinceRaw as number | undefined;
    const topicsRaw = ex.query.get('topics');
    const topics = topicsRaw
      ? topicsRaw.split(',').map((t) => {
          const parsed = StreamTopicSchema.safeParse(t.trim());
          if (!parsed.success) throw new RelayError('invalidParams', `invalid params: topics: unknown topic "${t.trim()}"`);
          return parsed.data;
        })
      : agentId
        ? []
        : [...StreamTopicSchema.options];
    const request = { agentId, ...(since !== undefined ? { since } : {}), topics };
    // The cursor and the read rule are checked before the stream starts: a refusal is an HTTP error.
    await relay.checkAttach(request, caller);
    const stream = ex.stream(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    session = new SseSession(stream, cleanup);
    stream.write('retry: 2000\n\n');
    const s = session;
    keepAlive = setInterval(() => s.comment('keep-alive'), opts.keepAliveMs);
    keepAlive.unref();
    await relay.attach(session, request, caller);
  } catch (err) {
    if (session) cleanup();
    sendError(ex, err);
  }
}
