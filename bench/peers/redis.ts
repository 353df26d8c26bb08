import { Redis } from 'ioredis';
import type { Driver, Endpoint, Publisher, SubHandle } from '../lib/drivers.js';
import { stampAt } from '../lib/payload.js';

function client(ep: Endpoint, autoPipeline = false): Redis {
  return new Redis({ host: '127.0.0.1', port: ep.port!, enableAutoPipelining: autoPipeline, maxRetriesPerRequest: 1, lazyConnect: false });
}

async function ready(r: Redis): Promise<Redis> {
  if (r.status !== 'ready')
    await new Promise<void>((resolve, reject) => {
      r.once('ready', () => resolve());
      r.once('error', reject);
    });
  return r;
}

/** Redis pub/sub: a connection per subscriber; PUBLISH is answered with the receiver count. */
export const redisPubSubDriver: Driver = {
  async subscribe(ep, _i, onStamp): Promise<SubHandle> {
    const r = await ready(client(ep));
    r.on('message', (_ch: string, msg: string) => {
      const s = stampAt(msg, 0);
      if (s) onStamp(s);
    });
    await r.subscribe(`bench:${ep.topic}`);
    return { close: async () => void r.disconnect(), reconnects: () => 0 };
  },
  async publisher(ep): Promise<Publisher> {
    const r = await ready(client(ep, true));
    const ch = `bench:${ep.topic}`;
    return { send: (body) => r.publish(ch, body), close: async () => void r.disconnect() };
  },
};

/**
 * Redis Streams with consumer groups: XADD (append-only file, everysec); each subscriber is its
 * own group (so every subscriber gets every message) reading with XREADGROUP BLOCK and XACKing.
 */
export const redisStreamsDriver: Driver = {
  async subscribe(ep, i, onStamp): Promise<SubHandle> {
    const r = await ready(client(ep));
    const key = `bench:s:${ep.topic}`;
    const group = `g${i}`;
    await r.xgroup('CREATE', key, group, '$', 'MKSTREAM').catch((err: Error) => {
      if (!/BUSYGROUP/.test(err.message)) throw err;
    });
    let closed = false;
    const loop = async () => {
      while (!closed) {
        const res = (await r.xreadgroup('GROUP', group, 'c', 'COUNT', 1000, 'BLOCK', 250, 'STREAMS', key, '>')) as Array<[string, Array<[string, string[]]>]> | null;
        if (!res) continue;
        const ids: string[] = [];
        for (const [, entries] of res) {
          for (const [id, fields] of entries) {
            ids.push(id);
            const s = stampAt(fields[1] ?? '', 0);
            if (s) onStamp(s);
          }
        }
        if (ids.length) void r.xack(key, group, ...ids).catch(() => {});
      }
    };
    const done = loop().catch(() => {});
    return {
      close: async () => {
        closed = true;
        await done;
        r.disconnect();
      },
      reconnects: () => 0,
    };
  },
  async publisher(ep): Promise<Publisher> {
    const r = await ready(client(ep, true));
    const key = `bench:s:${ep.topic}`;
    return { send: (body) => r.xadd(key, 'MAXLEN', '~', '500000', '*', 'b', body), close: async () => void r.disconnect() };
  },
};
