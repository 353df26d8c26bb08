import type { StreamTopic } from '../../protocol/index.js';

export interface FrameMeta {
  method: string;
  cursor?: number;
}

/** Result of writing a frame to a live connection. */
export type SendResult = 'ok' | 'backpressure' | 'dropped';

/**
 * A live connection as the domain sees it (WebSocket today, SSE later). No transport types leak here.
 * Frames are written in call order; a `dropped` result means the consumer is too slow and the
 * transport closes it with a reconnect-and-resume code: the frame is not lost, only its push.
 */
export interface Session {
  readonly id: number;
  /** The agent this connection registered as, or null for an observer. */
  agentId: string | null;
  /** Stream topics this connection subscribed to (observers' live feed). */
  readonly topics: Set<StreamTopic>;
  readonly kind: 'ws' | 'sse';
  /** True once the connection is gone: nothing may bind to it any more. */
  readonly closed: boolean;
  /**
   * Write one serialized JSON-RPC frame. `meta` carries what non-JSON-RPC transports need without
   * re-parsing: the notification method, and the message cursor (SSE `id:`) for message/new.
   */
  send(frame: string, meta?: FrameMeta): SendResult;
  close(code: number, reason: string): void;
}

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** One HTTP request as adapters see it: headers copied out, body fully read (bounded), reply once. */
export interface HttpExchange {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  /** Lowercased header names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** True once the client went away; replies are then dropped. */
  readonly aborted: boolean;
  reply(status: number, headers: Record<string, string>, body: string | Buffer): void;
  /** Called once if the client goes away before the reply (long-polls and streams clean up here). */
  onAbort(fn: () => void): void;
  /** Start a streamed response (SSE). The exchange is answered from then on through the stream. */
  stream(status: number, headers: Record<string, string>): HttpStream;
}

/** A streamed HTTP response. `write` reports backpressure like a WebSocket send. */
export interface HttpStream {
  write(chunk: string): SendResult;
  end(): void;
  readonly closed: boolean;
}

export type HttpHandler = (exchange: HttpExchange) => void | Promise<void>;
