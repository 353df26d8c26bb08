import type { Test } from 'tap';
import { createRelayClient, RelayRpcError, type RelayClient } from '../../clients/index.js';
import { ERRORS } from '../../protocol/errors.js';
import { History } from './history.js';
import { sleep } from './support.js';

/**
 * The mixed queue workload the crash and soak tests run, every actor through the client library
 * except webhooks: publishers send to `sink` and, every Nth send, a claimable message to
 * `cap:work`; a webhook poster delivers integration events (each retried with the same
 * webhook-id until answered); claimers claim every announced task and finish it; the sink only
 * receives. Everything attempted, acknowledged and handed over is recorded in a History.
 */

export interface WorkloadOptions {
  /** Relay URL the clients use (the crash test's proxy). */
  url: string;
  integration: string;
  hookSecret: string;
  publishers: number;
  claimers: number;
  /** Sends in flight per publisher. */
  window: number;
  /** Pause between a publisher's windows, ms. */
  pauseMs: number;
  /** Pause between webhook deliveries, ms (0: no webhooks). */
  hookPauseMs: number;
  claimableEvery: number;
  /** Prefix of agent ids and bodies, so several workloads can share a relay. */
  prefix?: string;
}

/**
 * A client-library agent as the workloads run them: reconnecting quickly, waiting for a relay that
 * is down, no heartbeats; closed at teardown. Handled trouble (a call that failed while the relay
 * was down) is not an error here.
 */
export function workloadAgent(t: Test, url: string, id: string, extra: { capabilities?: string[] } = {}): RelayClient {
  const c = createRelayClient({
    url,
    agent: { id, ...extra },
    reconnect: { initialMs: 100, maxMs: 800 },
    waitForRelay: true,
    callTimeoutMs: 30_000,
    heartbeatMs: 0,
  });
  t.teardown(() => c.close());
  c.on('error', () => undefined);
  return c;
}

export class Workload {
  readonly history = new History();
  readonly clients = new Map<string, RelayClient>();
  private running = false;
  private readonly loops: Array<Promise<void>> = [];
  private readonly claims = new Set<Promise<void>>();
  readonly reconnects = new Map<string, number>();

  constructor(
    private readonly t: Test,
    private readonly opts: WorkloadOptions,
  ) {}

  private get prefix(): string {
    return this.opts.prefix ?? '';
  }

  /** Agent ids of the receiving clients (the history checks their deliveries). */
  get receivers(): string[] {
    return [`${this.prefix}sink`, ...Array.from({ length: this.opts.claimers }, (_, i) => `${this.prefix}worker-${i}`)];
  }

  isPublisher = (from: string): boolean => from.startsWith(`${this.prefix}pub-`);

  private client(id: string, extra: { capabilities?: string[] } = {}): RelayClient {
    const c = workloadAgent(this.t, this.opts.url, id, extra);
    c.on('ready', (r) => {
      if (r.reconnected) this.reconnects.set(id, (this.reconnects.get(id) ?? 0) + 1);
    });
    this.clients.set(id, c);
    return c;
  }

  async start(): Promise<void> {
    const h = this.history;
    this.running = true;
    const sink = this.client(`${this.prefix}sink`);
    sink.on('message', (m) => h.noteDelivery(`${this.prefix}sink`, { id: m.id, body: m.body, from: m.from }));
    await sink.connect();
    for (let i = 0; i < this.opts.claimers; i++) {
      const name = `${this.prefix}worker-${i}`;
      const c = this.client(name, { capabilities: ['work'] });
      c.on('message', (m) => {
        h.noteDelivery(name, { id: m.id, body: m.body, from: m.from });
        if (m.taskId !== null && this.running) {
          const p = this.claim(c, name, m.taskId);
          this.claims.add(p);
          void p.finally(() => this.claims.delete(p));
        }
      });
      await c.connect();
    }
    for (let i = 0; i < this.opts.publishers; i++) {
      const name = `${this.prefix}pub-${i}`;
      const c = this.client(name);
      await c.connect();
      this.loops.push(this.publish(c, name));
    }
    if (this.opts.hookPauseMs > 0) this.loops.push(this.postHooks());
  }

  /** Stop issuing work and wait for everything in flight to be answered. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    while (this.claims.size > 0) await Promise.all([...this.claims]);
  }

  private async publish(c: RelayClient, name: string): Promise<void> {
    const h = this.history;
    let seq = 0;
    while (this.running) {
      const window: Array<Promise<void>> = [];
      for (let i = 0; i < this.opts.window; i++) {
        const n = seq++;
        const claimable = n % this.opts.claimableEvery === 0;
        const body = `${name}:${n}`;
        const to = claimable ? 'cap:work' : `${this.prefix}sink`;
        h.sendsAttempted.add(body);
        window.push(
          c.send(to, body, claimable ? { claimable: true } : {}).then(
            (r) => h.noteSendResult(body, to, { id: r.message.id, taskId: r.task?.id ?? null }),
            (err: unknown) => h.noteSendResult(body, to, err instanceof RelayRpcError ? { code: err.code } : 'indeterminate'),
          ),
        );
      }
      await Promise.all(window);
      await sleep(this.opts.pauseMs);
    }
  }

  private async claim(c: RelayClient, name: string, taskId: number): Promise<void> {
    const h = this.history;
    let token: number;
    try {
      const r = await c.call('task/claim', { id: taskId });
      token = r.claimToken;
      h.claimsAcked.push({ taskId, owner: name, attempt: token });
    } catch (err) {
      if (err instanceof RelayRpcError && err.code === ERRORS.conflict.code) h.claimConflicts++;
      else if (err instanceof RelayRpcError) h.claimsRefused.set(err.code, (h.claimsRefused.get(err.code) ?? 0) + 1);
      else h.claimsIndeterminate++;
      return;
    }
    try {
      await c.call('task/update', { id: taskId, claimToken: token, status: 'done' });
      h.donesAcked.push({ taskId, owner: name, attempt: token });
    } catch (err) {
      if (err instanceof RelayRpcError) h.claimsRefused.set(err.code, (h.claimsRefused.get(err.code) ?? 0) + 1);
    }
  }

  private async postHooks(): Promise<void> {
    const h = this.history;
    let n = 0;
    while (this.running) {
      const id = `${this.prefix}hook-${n++}`;
      h.hooksAttempted.add(id);
      // One delivery id, retried until answered: a retry of a committed delivery is a duplicate.
      for (let attempt = 0; attempt < 600; attempt++) {
        if (attempt > 0) {
          h.hookRetries++;
          await sleep(100);
        }
        try {
          const res = await fetch(`${this.opts.url}/api/integrations/${this.opts.integration}/events`, {
            method: 'POST',
            headers: { authorization: `Bearer ${this.opts.hookSecret}`, 'webhook-id': id, 'content-type': 'application/json' },
            body: JSON.stringify({ title: id }),
            signal: AbortSignal.timeout(10_000),
          });
          const body = (await res.json()) as { duplicate?: boolean; taskId?: number; task?: { id: number } };
          if (res.status === 201 || res.status === 200) {
            if (body.duplicate) h.hookDuplicateAnswers++;
            h.hooksAcked.set(id, body.duplicate ? body.taskId! : body.task!.id);
          } else {
            h.hooksRefused.set(res.status, (h.hooksRefused.get(res.status) ?? 0) + 1);
          }
          break;
        } catch {
          // The relay is down (or died mid-request): the same delivery goes again.
        }
      }
      await sleep(this.opts.hookPauseMs);
    }
  }
}
