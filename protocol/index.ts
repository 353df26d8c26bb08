/** The wire contract. Pure: no I/O. The only import path for the broker, clients and adapters. */
export * from './common.js';
export * from './agent-id.js';
export * from './limits.js';
export * from './well-formed.js';
export * from './frame-guard.js';
export * from './errors.js';
export * from './error-reply.js';
export * from './close-codes.js';
export * from './websocket.js';
export * from './http-paths.js';
export * from './notifications.js';
export * from './method-table.js';
export * from './openrpc.js';
export * from './methods/agent.js';
export * from './methods/message.js';
export * from './methods/task.js';
export * from './methods/event.js';
