import { ERRORS } from '../../protocol/index.js';
import type { RelayCore } from '../../broker/domain/core.js';
import type { HttpExchange, HttpHandler } from '../../broker/domain/ports.js';
import type { RpcDispatcher } from '../../broker/transport/rpc-dispatch.js';

const JSON_TYPE = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };

function json(ex: HttpExchange, status: number, value: unknown): void {
  ex.reply(status, JSON_TYPE, JSON.stringify(value));
}

/** HTTP routes. POST /rpc runs the same dispatcher as the WebSocket, so results and errors match. */
export function createHttpHandler(core: RelayCore, dispatcher: RpcDispatcher): HttpHandler {
  return async (ex) => {
    if (ex.path === '/rpc') {
      if (ex.method !== 'POST') return json(ex, 405, { error: { code: ERRORS.invalidRequest.code, message: 'use POST /rpc with a JSON-RPC body' } });
      const response = await dispatcher.handleFrame(ex.body.toString('utf8'), { session: null, agentId: null, transport: 'http' });
      if (response === null) return ex.reply(204, { 'cache-control': 'no-store' }, '');
      return ex.reply(200, JSON_TYPE, response);
    }
    if (ex.path === '/healthz' && ex.method === 'GET') {
      return json(ex, 200, { ok: true, agents: core.agents.size, connections: core.sessions.size, cursor: core.store.messages.maxId() });
    }
    return json(ex, 404, { error: { code: ERRORS.notFound.code, message: `not found: ${ex.method} ${ex.path}` } });
  };
}
