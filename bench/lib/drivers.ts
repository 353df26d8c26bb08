import type { Stamp } from './payload.js';

/** Every system the fan-out and publish scenarios drive with the same load generator. */
export const SYSTEMS = ['relay', 'uws', 'nats', 'jetstream', 'redis-pubsub', 'redis-streams'] as const;
export type SystemName = (typeof SYSTEMS)[number];

export const SYSTEM_LABELS: Record<SystemName, string> = {
  relay: 'Agent Relay (durable)',
  uws: 'bare uWS (ceiling)',
  nats: 'NATS core',
  jetstream: 'NATS JetStream',
  'redis-pubsub': 'Redis pub/sub',
  'redis-streams': 'Redis Streams (groups)',
};

/** Where a system listens, and the topic/tag/subject/stream of this run. */
export interface Endpoint {
  system: SystemName;
  /** ws://… for relay and bare uWS. */
  url?: string;
  /** TCP port for NATS and Redis. */
  port?: number;
  /** Distinguishes the runs that share one server. */
  topic: string;
  /** Relay only: send to this target instead of `tag:TOPIC` (e.g. one agent id). */
  target?: string;
}

export interface SubHandle {
  close(): Promise<void>;
  reconnects(): number;
}

export interface Publisher {
  /** A promise when the system acknowledges the publish. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a driver's send is synchronous or returns a promise
  send(body: string): Promise<unknown> | void;
  batch?(fn: () => void): void;
  close(): Promise<void>;
}

export interface Driver {
  /** Once per endpoint, before subscribers open (e.g. create a stream). */
  prepare?(ep: Endpoint): Promise<void>;
  subscribe(ep: Endpoint, index: number, onStamp: (s: Stamp) => void): Promise<SubHandle>;
  publisher(ep: Endpoint, index: number): Promise<Publisher>;
}

export async function loadDriver(system: SystemName): Promise<Driver> {
  switch (system) {
    case 'relay':
      return (await import('./relay-driver.js')).relayDriver;
    case 'uws':
      return (await import('../ceilings/uws.js')).uwsDriver;
    case 'nats':
      return (await import('../peers/nats.js')).natsCoreDriver;
    case 'jetstream':
      return (await import('../peers/nats.js')).jetStreamDriver;
    case 'redis-pubsub':
      return (await import('../peers/redis.js')).redisPubSubDriver;
    case 'redis-streams':
      return (await import('../peers/redis.js')).redisStreamsDriver;
  }
}
