import { connect, DeliverPolicy, RetentionPolicy, StorageType, DiscardPolicy, type NatsConnection } from 'nats';
import type { Driver, Endpoint, Publisher, SubHandle } from '../lib/drivers.js';
import { stampAt, type Stamp } from '../lib/payload.js';

const enc = new TextEncoder();
export const STREAM = 'BENCH';

function headOf(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, Math.min(32, data.byteLength)).toString('latin1');
}

function conn(ep: Endpoint): Promise<NatsConnection> {
  return connect({ servers: `127.0.0.1:${ep.port}`, maxReconnectAttempts: 5, pingInterval: 60_000 });
}

/** NATS core: one connection and one subscription per subscriber; publishes are fire-and-forget. */
export const natsCoreDriver: Driver = {
  async subscribe(ep, _i, onStamp: (s: Stamp) => void): Promise<SubHandle> {
    const nc = await conn(ep);
    nc.subscribe(`bench.core.${ep.topic}`, {
      callback: (_err, m) => {
        const s = stampAt(headOf(m.data), 0);
        if (s) onStamp(s);
      },
    });
    await nc.flush();
    return { close: () => nc.close(), reconnects: () => 0 };
  },
  async publisher(ep): Promise<Publisher> {
    const nc = await conn(ep);
    const subject = `bench.core.${ep.topic}`;
    return {
      send: (body) => nc.publish(subject, enc.encode(body)),
      close: async () => {
        await nc.flush();
        await nc.close();
      },
    };
  },
};

/** Create (or reset) the file-backed stream every JetStream run uses. */
export async function ensureStream(port: number): Promise<void> {
  const nc = await connect({ servers: `127.0.0.1:${port}` });
  const jsm = await nc.jetstreamManager();
  try {
    await jsm.streams.delete(STREAM);
  } catch {
    /* none yet */
  }
  await jsm.streams.add({ name: STREAM, subjects: ['bench.js.>'], storage: StorageType.File, retention: RetentionPolicy.Limits, max_msgs: 2_000_000, discard: DiscardPolicy.Old });
  await nc.close();
}

/**
 * JetStream: acknowledged publishes into a file-backed stream; each subscriber is its own ordered
 * consumer (ephemeral, flow-controlled) of the run's subject, starting at new messages.
 */
export const jetStreamDriver: Driver = {
  prepare: (ep) => ensureStream(ep.port!),
  async subscribe(ep, _i, onStamp): Promise<SubHandle> {
    const nc = await conn(ep);
    const js = nc.jetstream();
    const consumer = await js.consumers.get(STREAM, { filterSubjects: `bench.js.${ep.topic}`, deliver_policy: DeliverPolicy.New });
    const messages = await consumer.consume({ max_messages: 1000 });
    void (async () => {
      for await (const m of messages) {
        const s = stampAt(headOf(m.data), 0);
        if (s) onStamp(s);
      }
    })().catch(() => {});
    return {
      close: async () => {
        await messages.close();
        await nc.close();
      },
      reconnects: () => 0,
    };
  },
  async publisher(ep): Promise<Publisher> {
    const nc = await conn(ep);
    const js = nc.jetstream();
    const subject = `bench.js.${ep.topic}`;
    return {
      send: (body) => js.publish(subject, enc.encode(body)),
      close: () => nc.close(),
    };
  },
};
