import { Worker } from 'node:worker_threads';
import { RelayError } from '../../protocol/index.js';
import type { RankedId, SearchFilter, SearchReads, SearchTerm, StoredHit } from '../domain/store-port.js';
import type { SearchData, SearchReply, SearchRequest } from './search-protocol.js';
import { workerEntry } from './writer-entry.js';
import { fromWire } from './writer-protocol.js';

type Waiter = { resolve: (v: unknown) => void; reject: (err: unknown) => void };

/**
 * message/search's reads, answered by the search thread (search-thread.ts) one at a time in the
 * order asked. Started on first use: a relay nobody searches runs no thread for it.
 */
export class SearchThread implements SearchReads {
  private worker: Worker | null = null;
  private starting: Promise<Worker> | null = null;
  private readonly waiters = new Map<number, Waiter>();
  private seq = 0;
  private closed = false;

  constructor(private readonly data: SearchData) {}

  rank(filter: SearchFilter): Promise<RankedId[]> {
    return this.request((id) => ({ type: 'rank', id, filter })) as Promise<RankedId[]>;
  }

  hits(terms: readonly SearchTerm[], ids: readonly number[]): Promise<StoredHit[]> {
    return this.request((id) => ({ type: 'hits', id, terms, ids })) as Promise<StoredHit[]>;
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker ?? (this.starting ? await this.starting.catch(() => null) : null);
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.ref(); // until it has exited: the process must not end first
    worker.postMessage({ type: 'close' } satisfies SearchRequest);
    await exited;
  }

  private async request(make: (id: number) => SearchRequest): Promise<unknown> {
    if (this.closed) throw new RelayError('storageBusy', 'relay is shutting down');
    const worker = this.worker ?? (await (this.starting ??= this.start()));
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
      // Keep the process alive while a search of ours is running (not when idle).
      if (this.waiters.size === 1) worker.ref();
      worker.postMessage(make(id));
    });
  }

  private async start(): Promise<Worker> {
    const entry = await workerEntry('search');
    const worker = new Worker(entry.url, { workerData: this.data, execArgv: entry.execArgv, name: 'agent-relay store search' });
    worker.unref();
    worker.on('message', (r: SearchReply) => {
      const w = this.waiters.get(r.id);
      if (!w) return;
      this.waiters.delete(r.id);
      if (this.waiters.size === 0) worker.unref();
      if (r.type === 'failed') w.reject(fromWire(r.error));
      else w.resolve(r.value);
    });
    // A dead search thread fails its searches; the next search starts a new one.
    const gone = (err: Error) => {
      if (this.worker === worker) {
        this.worker = null;
        this.starting = null;
      }
      for (const w of this.waiters.values()) w.reject(err);
      this.waiters.clear();
    };
    worker.on('error', gone);
    worker.on('exit', (code) => {
      if (!this.closed) gone(new Error(`the search thread exited (code ${code})`));
    });
    this.worker = worker;
    return worker;
  }
}
