import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { CommitObserver } from './domain/commit-queue.js';
import type { Domain } from './domain/domain.js';

/**
 * Told of each batch's time in the SQLite writer thread: its writes, then its COMMIT (SqliteStore's
 * observeBatch; spelled out here because metrics sit below the store in the layers).
 */
export type StoreBatchObserver = (timing: { applyMs: number; commitMs: number }) => void;

/**
 * Prometheus metrics: one registry per relay (tests run several). Commit latency is observed by
 * the group commit, which exists before the state it measures: `createMetrics` gives the
 * observer first, `watchState` adds the gauges read at scrape time once the domain exists.
 */
export function createMetrics(): { register: Registry; observeCommit: CommitObserver; observeStoreBatch: StoreBatchObserver } {
  const register = new Registry();
  // prom-client's default names already start with process_ or nodejs_: the prefix is only ours.
  collectDefaultMetrics({ register, prefix: 'agent_relay_', eventLoopMonitoringPrecision: 20 });
  const buckets = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1];
  const commits = new Histogram({
    name: 'agent_relay_commit_seconds',
    help: 'Group commit, as the event loop waits for it: from handing the batch to the store to its answer (waiting behind the batch before it, the trip to the writer thread and back, the writes, COMMIT and its sync).',
    buckets,
    registers: [register],
  });
  // The SQLite store's own share of a commit, measured in its writer thread: the rest of
  // agent_relay_commit_seconds is queueing and the trips between the threads.
  const storeApply = new Histogram({
    name: 'agent_relay_store_apply_seconds',
    help: 'SQLite writer thread: applying a batch of writes (BEGIN IMMEDIATE to before COMMIT).',
    buckets,
    registers: [register],
  });
  const storeCommit = new Histogram({
    name: 'agent_relay_store_commit_seconds',
    help: "SQLite writer thread: a batch's COMMIT, with the WAL's fsync at synchronous=FULL.",
    buckets,
    registers: [register],
  });
  const batch = new Histogram({
    name: 'agent_relay_commit_batch_size',
    help: 'Writes sharing one commit.',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [register],
  });
  const observeCommit: CommitObserver = (ms, writes) => {
    commits.observe(ms / 1000);
    if (writes.length > 0) batch.observe(writes.length);
  };
  const observeStoreBatch: StoreBatchObserver = ({ applyMs, commitMs }) => {
    storeApply.observe(applyMs / 1000);
    storeCommit.observe(commitMs / 1000);
  };
  return { register, observeCommit, observeStoreBatch };
}

/** Gauges read at scrape time from live state and cheap grouped counts. */
export function watchState(register: Registry, core: Domain, extra: { longPolls: () => number }): void {
  new Gauge({
    name: 'agent_relay_connections',
    help: 'Live connections by kind (ws, sse) and long-polls waiting.',
    labelNames: ['kind'],
    registers: [register],
    collect() {
      this.reset();
      let ws = 0;
      let sse = 0;
      for (const s of core.sessions.sessions()) s.kind === 'ws' ? ws++ : sse++;
      this.set({ kind: 'ws' }, ws);
      this.set({ kind: 'sse' }, sse);
      this.set({ kind: 'long_poll' }, extra.longPolls());
    },
  });
  new Gauge({
    name: 'agent_relay_agents',
    help: 'Known agents by status.',
    labelNames: ['status'],
    registers: [register],
    collect() {
      this.reset();
      const counts: Record<string, number> = { online: 0, busy: 0, away: 0, offline: 0 };
      for (const a of core.agents.values()) counts[a.status] = (counts[a.status] ?? 0) + 1;
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'agent_relay_message_cursor',
    help: 'Highest message id committed (messages ever sent).',
    registers: [register],
    async collect() {
      this.set(await core.store.messages.maxId());
    },
  });
  new Gauge({
    name: 'agent_relay_tasks',
    help: 'Tasks by status.',
    labelNames: ['status'],
    registers: [register],
    async collect() {
      const counts = await core.store.tasks.countByStatus();
      this.reset();
      for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'agent_relay_outbox',
    help: 'Callback outbox entries by state (pending is the depth; dead are dead letters).',
    labelNames: ['state'],
    registers: [register],
    async collect() {
      const depth = await core.store.outbox.depthByState();
      this.reset();
      for (const [state, n] of Object.entries(depth)) this.set({ state }, n);
    },
  });
  // Debugging aid, present only when node runs with --expose-gc (the soak test does): heap in use
  // right after a full collection, so growth means retained objects, not garbage not yet collected.
  // Timers and handles are already in the default metrics (nodejs_active_resources{type}).
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc === 'function') {
    new Gauge({
      name: 'agent_relay_debug_heap_used_after_gc_bytes',
      help: 'V8 heap used right after a full GC run at scrape time (only with node --expose-gc).',
      registers: [register],
      collect() {
        gc();
        this.set(process.memoryUsage().heapUsed);
      },
    });
  }
}
