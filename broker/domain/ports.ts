import type { Message, MethodName, StreamTopic, TaskCreateParams, TaskCreateResult } from '../../protocol/index.js';

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

/** An HTTP route handler: the transport resolved the caller's credentials before it runs. */
export type HttpHandler = (exchange: HttpExchange, caller: Caller) => void | Promise<void>;

/** Who is calling and over what. Built by the transport from what the request carried; nothing after it authenticates. */
export interface Caller {
  /** The live connection, for WebSocket calls; null over HTTP. */
  session: Session | null;
  /** The verified calling agent (session registration, or agentId + agentToken over HTTP). */
  agentId: string | null;
  transport: 'ws' | 'http';
  /** A webhook delivery the transport verified with this integration's secret (ingress only). */
  integration?: { name: string; replayKey: string | null };
}

/** What a stream asks for when it attaches (agent/register, stream/subscribe, SSE). */
export interface AttachRequest {
  /** Bind the session as this agent (its inbox is pushed), or null to only follow topics. */
  agentId: string | null;
  /** Replay messages after this id first (the agent's inbox, or the whole feed when following `messages`). */
  since?: number;
  /** Replay events after this id first (when following `events`). */
  eventsSince?: number;
  topics: readonly StreamTopic[];
}

export interface HealthReport {
  writable: boolean;
  lastCommitFailure: { at: number; error: string } | null;
  agents: number;
  connections: number;
  cursor: number;
  storage: { synchronous: string; journalMode: string };
}

/** What an integration's configuration gives its deliveries. */
export interface IntegrationDefaults {
  target: string | undefined;
  channel: string | undefined;
  callbackUrl: string | undefined;
}

/**
 * What the edge adapters (adapters/http) may ask of the relay: the one method table, the one
 * attach, webhook ingress onto task/create's own domain function, health. Nothing else of the
 * broker is theirs to reach; the composition root (broker/relay.ts) builds it.
 */
export interface RelayEdge {
  /** One method call through the method table (params validated, caller authorized), as `caller`. */
  call(method: MethodName, params: unknown, caller: Caller): Promise<unknown>;
  /** One JSON-RPC frame or batch (POST /rpc): the response text, or null for notifications only. */
  handleFrame(text: string, caller: Caller): Promise<string | null>;
  /**
   * Start a live stream on `session`: checks the cursor and the read rule, binds the agent, replays
   * the backlog (bounded by the session's backpressure), subscribes the topics; nothing committed
   * meanwhile slips between. Throws a RelayError when refused.
   */
  attach(session: Session, request: AttachRequest, caller: Caller): Promise<void>;
  /** The refusals `attach` would meet (cursor expired, another agent's inbox), before a stream starts. */
  checkAttach(request: AttachRequest, caller: Caller): Promise<void>;
  /** The session is gone (an agent's presence TTL counts from now). */
  detach(session: Session): string | null;
  /** The integration named so, if configured. */
  integration(name: string): IntegrationDefaults | undefined;
  /** A verified webhook delivery as task/create (source = the integration); a replayed delivery id answers its task. */
  ingest(caller: Caller, params: TaskCreateParams): Promise<TaskCreateResult | { duplicate: true; taskId: number | null }>;
  /** A delivery id the integration already delivered (replay), with its task. */
  receiptSeen(integration: string, deliveryId: string): Promise<{ taskId: number | null } | undefined>;
  health(): Promise<HealthReport>;
  /** Hear of every committed message (long-polls wake on it). */
  onMessage(listener: (message: Message, recipients: readonly string[]) => void): void;
}
