/**
 * WebSocket handshake facts shared by the relay and its clients. Browsers cannot set an
 * Authorization header on an upgrade, so a token may ride as a subprotocol instead.
 */
export const WS_SUBPROTOCOL = 'agent-relay.v1';
/** `bearer.TOKEN` offered beside WS_SUBPROTOCOL carries the relay or agent token. */
export const WS_BEARER_PREFIX = 'bearer.';
/** The WebSocket endpoint's path. */
export const WS_PATH = '/rpc';
