import WebSocket from 'ws';
import { RelayClient, type RelayClientOptions, type SocketFactory, type WebSocketLike } from './relay-client.js';

export * from './relay-client.js';
export * from './errors.js';
export * from './backoff.js';
export * from './pages.js';
export type * from '../protocol/common.js';
export type { MethodName, MethodParams, MethodResult } from '../protocol/method-table.js';
export type { LeaseUpdatedParams, TaskUpdatedParams } from '../protocol/notifications.js';

/** Node sockets via `ws`: the token goes in an Authorization header, and no Origin is sent. */
export const nodeSocket: SocketFactory = (url, protocols, token) => new WebSocket(url, protocols, { headers: token ? { authorization: `Bearer ${token}` } : {} }) as unknown as WebSocketLike;

/** A RelayClient for Node (uses `ws` unless a socket factory is given). */
export function createRelayClient(opts: RelayClientOptions): RelayClient {
  return new RelayClient({ createSocket: nodeSocket, ...opts });
}
