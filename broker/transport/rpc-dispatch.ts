import { JSONRPCServer, type JSONRPCErrorResponse, type JSONRPCID, type JSONRPCRequest, type JSONRPCResponse } from 'json-rpc-2.0';
import {
  buildOpenRpcDocument,
  DISCOVER_METHOD,
  ERRORS,
  errorReply,
  frameShapeProblem,
  frameShapeRefusal,
  illFormedMessage,
  illFormedStringPath,
  isAcceptableId,
  isMethodName,
  LIMITS,
  METHODS,
  RelayError,
  type MethodName,
  type WireError,
} from '../../protocol/index.js';
import { requireAgent, type Caller, type CallContext } from '../domain/context.js';
import type { Domain } from '../domain/domain.js';
import { HANDLERS } from '../domain/handlers/index.js';
import type { Logger } from '../logger.js';

function errorResponse(id: JSONRPCID, error: WireError): JSONRPCErrorResponse {
  return { jsonrpc: '2.0', id, error };
}

/** The response as text, or -32005 with its id when its UTF-8 would be longer than `maxBytes`. */
function fitReply(response: JSONRPCResponse, maxBytes: number): string {
  const text = JSON.stringify(response);
  // A UTF-16 code unit is at most 3 bytes of UTF-8: most replies need no byte count (the send
  // queue counts them again anyway).
  if (text.length * 3 <= maxBytes) return text;
  const bytes = Buffer.byteLength(text);
  if (bytes <= maxBytes) return text;
  return JSON.stringify(
    errorResponse(response.id, {
      code: ERRORS.tooLarge.code,
      message: `too large: result of ${bytes} bytes exceeds the ${Math.floor(maxBytes)} this connection can be sent; page with limit/since (or fewer batch entries)`,
    }),
  );
}

/** -32005 for every request of a frame holding more object keys than LIMITS.maxFrameKeys. */
function tooManyKeys(payload: unknown): string {
  const { message } = frameShapeRefusal('keys', 'frame');
  const refuse = (entry: unknown) => {
    const id = typeof entry === 'object' && entry !== null && isAcceptableId((entry as { id?: unknown }).id, LIMITS.maxIdLength) ? ((entry as { id: JSONRPCID }).id ?? null) : null;
    return errorResponse(id, { code: ERRORS.tooLarge.code, message });
  };
  return JSON.stringify(Array.isArray(payload) && payload.length > 0 ? payload.slice(0, LIMITS.maxBatch).map(refuse) : refuse(payload));
}

/**
 * The one JSON-RPC entry point for every transport: frame text in, response text (or nothing) out.
 * Envelope checks happen here; params are validated with the method's zod schema before any handler
 * runs; only catalogue errors reach the wire.
 */
export class RpcDispatcher {
  // The library's default errorListener is console.warn: every caller error (bad params, not found)
  // would print a stack trace to stderr, bypassing the logger. Internal errors are logged in toWireError.
  private readonly server = new JSONRPCServer<Caller>({ errorListener: () => undefined });
  private discoverDoc: Record<string, unknown> | undefined;

  constructor(
    private readonly domain: Domain,
    private readonly log: Logger,
    private readonly version: string,
  ) {
    for (const name of Object.keys(METHODS) as MethodName[]) {
      this.server.addMethod(name, (params: unknown, ctx: Caller) => this.call(name, params, ctx));
    }
    this.server.addMethod(DISCOVER_METHOD, async (params: unknown) => {
      // The document is public, but a presented agent credential is still checked, as on every
      // other method: a wrong or foreign agentToken is refused, never silently ignored (auth matrix).
      const p = params as { agentId?: unknown; agentToken?: unknown } | undefined;
      if (p && typeof p === 'object' && typeof p.agentToken === 'string') {
        await this.domain.agents.authenticate(typeof p.agentId === 'string' ? p.agentId : undefined, p.agentToken);
      }
      return (this.discoverDoc ??= buildOpenRpcDocument(this.version));
    });
    this.server.mapErrorToJSONRPCErrorResponse = (id, error) => errorResponse(id, this.toWireError(error, id));
  }

  /** Run one method call (used by REST routes as well): validate, authenticate, handle. */
  async call(name: MethodName, rawParams: unknown, ctx: Caller): Promise<unknown> {
    const spec = METHODS[name];
    if (spec.auth === 'session' && !ctx.session) {
      throw new RelayError('invalidRequest', `${name} needs a live connection: use the WebSocket, or GET /api/stream over HTTP`);
    }
    if (rawParams !== undefined && (typeof rawParams !== 'object' || rawParams === null || Array.isArray(rawParams))) {
      throw new RelayError('invalidParams', 'invalid params: params must be an object of named fields');
    }
    const illFormed = illFormedStringPath(rawParams);
    if (illFormed !== null) throw new RelayError('invalidParams', illFormedMessage(illFormed));
    const params = spec.params.parse(rawParams ?? {}) as Record<string, unknown>;
    let agentId = ctx.session?.agentId ?? ctx.agentId;
    if (typeof params.agentToken === 'string' && name !== 'agent/register') {
      agentId = await this.domain.agents.authenticate(params.agentId as string | undefined, params.agentToken);
    }
    const call: CallContext = { session: ctx.session, agentId, transport: ctx.transport, domain: this.domain };
    if (spec.auth === 'agent') requireAgent(call);
    return (HANDLERS[name] as (x: CallContext, p: unknown) => unknown)(call, params);
  }

  /**
   * Handle one frame (WebSocket text frame or POST /rpc body). Resolves to the response text, or
   * null. A result whose UTF-8 is longer than `maxReplyBytes` (the WebSocket send buffer) could never be sent: it
   * is answered with -32005 instead, so the caller hears why rather than waiting forever.
   */
  async handleFrame(text: string, ctx: Caller, maxReplyBytes = Infinity): Promise<string | null> {
    const shape = frameShapeProblem(text, LIMITS.maxDepth, LIMITS.maxFrameKeys);
    if (shape === 'depth') {
      return JSON.stringify(errorResponse(null, { code: ERRORS.invalidRequest.code, message: frameShapeRefusal(shape, 'frame').message }));
    }
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch (err) {
      return JSON.stringify(errorResponse(null, { code: ERRORS.parseError.code, message: `parse error: ${(err as Error).message}` }));
    }
    // Parsed only to answer each request by its id (JSON.parse is cheap next to validating and
    // storing 100k keys, which held the loop ~700 ms); nothing of it runs.
    if (shape === 'keys') return tooManyKeys(payload);
    if (Array.isArray(payload)) {
      if (payload.length === 0) {
        return JSON.stringify(errorResponse(null, { code: ERRORS.invalidRequest.code, message: 'invalid request: empty batch' }));
      }
      if (payload.length > LIMITS.maxBatch) {
        return JSON.stringify(errorResponse(null, { code: ERRORS.tooLarge.code, message: `too large: batch of ${payload.length} entries exceeds ${LIMITS.maxBatch}` }));
      }
      // In order, one after another: an entry sees what earlier ones did, e.g. the identity an
      // agent/register gave the connection (run concurrently, a send after it went out as ext:observer).
      const responses: JSONRPCResponse[] = [];
      for (const entry of payload) {
        const response = await this.handleEntry(entry, ctx);
        if (response !== null) responses.push(response);
      }
      if (responses.length === 0) return null;
      // Entries keep their results in order while the batch fits; one that would pass it is refused.
      let room = maxReplyBytes - responses.length - 1;
      const texts = responses.map((r) => {
        const text = fitReply(r, room);
        room -= Buffer.byteLength(text);
        return text;
      });
      return `[${texts.join(',')}]`;
    }
    const response = await this.handleEntry(payload, ctx);
    return response ? fitReply(response, maxReplyBytes) : null;
  }

  private async handleEntry(entry: unknown, ctx: Caller): Promise<JSONRPCResponse | null> {
    const invalid = this.checkEnvelope(entry);
    if (invalid) return invalid;
    const request = entry as JSONRPCRequest;
    if (!isMethodName(request.method) && request.method !== DISCOVER_METHOD) {
      if (request.id === undefined) return null;
      return errorResponse(request.id, { code: ERRORS.methodNotFound.code, message: `method not found: ${request.method.slice(0, 100)}` });
    }
    return this.server.receive(request, ctx);
  }

  /** JSON-RPC 2.0 envelope rules plus the relay's id limits; returns the error response or null. */
  private checkEnvelope(entry: unknown): JSONRPCResponse | null {
    const bad = (id: JSONRPCID, why: string) => errorResponse(id, { code: ERRORS.invalidRequest.code, message: `invalid request: ${why}` });
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return bad(null, 'expected a request object');
    const r = entry as Record<string, unknown>;
    const hasId = Object.hasOwn(r, 'id');
    if (hasId && !isAcceptableId(r.id, LIMITS.maxIdLength)) {
      return bad(null, `id must be null, a string of at most ${LIMITS.maxIdLength} characters, or a safe integer`);
    }
    const id = hasId ? (r.id as JSONRPCID) : null;
    if (r.jsonrpc !== '2.0') return bad(id, 'jsonrpc must be "2.0"');
    if (typeof r.method !== 'string' || r.method.length === 0) return bad(id, 'method must be a non-empty string');
    if (r.params !== undefined && (typeof r.params !== 'object' || r.params === null)) return bad(id, 'params must be an object');
    if ('result' in r || 'error' in r) return bad(id, 'a request carries no result or error');
    return null;
  }

  private toWireError(error: unknown, id: JSONRPCID): WireError {
    const reply = errorReply(error);
    if (reply.kind === 'internal') this.log.error({ err: error, rpcId: id }, 'internal error in method call');
    return reply.error;
  }
}
