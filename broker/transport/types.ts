import type { RelayConfig } from '../config.js';
import type { Domain } from '../domain/domain.js';
import type { HttpHandler } from '../domain/ports.js';
import type { Logger } from '../logger.js';
import type { RpcDispatcher } from './rpc-dispatch.js';

/** What a transport needs from the relay: the same for every implementation. */
export interface TransportDeps {
  domain: Domain;
  dispatcher: RpcDispatcher;
  config: RelayConfig;
  log: Logger;
  http: HttpHandler;
}

/**
 * A listening transport. Whichever implementation runs (uWS or node:http + ws), it serves the same
 * routes with the same limits and close codes; the relay cannot tell them apart.
 */
export interface RunningTransport {
  port: number;
  /** Stop accepting connections and requests. */
  stopListening(): void;
  /** Close every live WebSocket with the given code. */
  closeAll(code: number, reason: string): void;
  /** Frames read but still waiting their turn (fair dispatch): the group commit waits for them. */
  framesWaiting(): number;
}

/** One implementation of the port: starts listening on config.host:config.port. */
export type TransportBinding = (deps: TransportDeps) => Promise<RunningTransport>;
