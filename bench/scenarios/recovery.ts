import { statSync } from 'node:fs';
import type { BenchContext } from '../lib/context.js';
import { forkWorker } from '../lib/proc.js';
import { startRelay, tempDbPath } from '../lib/relay-proc.js';

export interface RecoveryResult {
  messages: number;
  tasks: number;
  dbMiB: number;
  seedSec: number;
  /** Spawn → /healthz answering, on an empty database (process and module start-up). */
  emptyStartMs: number;
  /** The same on the seeded database. */
  restartMs: number;
  agents: number;
  missedEach: number;
  /** First connect → every agent has all its missed messages. */
  catchUpMs: number;
  caughtUp: number;
  catchUpMsgsPerSec: number;
}

export async function runRecovery(ctx: BenchContext): Promise<RecoveryResult> {
  const r = ctx.cfg.recovery;
  const path = tempDbPath('recovery');
  const seeder = await forkWorker('recovery-seed', 'scenarios/recovery-seed.ts');
  let seeded: { agents: Array<{ id: string; token: string; since: number }>; ms: number };
  try {
    seeded = await seeder.call('seed', { path, messages: r.messages, tasks: r.tasks, agents: r.agents, missed: r.missedEach }, 1_800_000);
  } finally {
    await seeder.stop();
  }
  const dbMiB = Math.round(statSync(path).size / 2 ** 20);
  ctx.log(`  seeded ${r.messages} messages, ${r.tasks} tasks, ${r.agents} agents (${dbMiB} MiB) in ${(seeded.ms / 1000).toFixed(1)} s`);

  const empty = await startRelay({ name: 'recovery-empty' });
  await empty.stop();
  const relay = await startRelay({ name: 'recovery', dbPath: path, cpuProf: ctx.cpuProf });
  const worker = await forkWorker('recovery-agents', 'scenarios/conn-worker.ts');
  try {
    const out = await worker.call<{ ms: number; done: number; messages: number }>('resume', { url: relay.wsUrl, agents: seeded.agents, expect: r.missedEach, timeoutMs: 120_000 }, 180_000);
    const res: RecoveryResult = {
      messages: r.messages,
      tasks: r.tasks,
      dbMiB,
      seedSec: Math.round(seeded.ms / 100) / 10,
      emptyStartMs: Math.round(empty.startupMs),
      restartMs: Math.round(relay.startupMs),
      agents: r.agents,
      missedEach: r.missedEach,
      catchUpMs: Math.round(out.ms),
      caughtUp: out.done,
      catchUpMsgsPerSec: Math.round(out.messages / (out.ms / 1000)),
    };
    ctx.log(
      `  restart: ${res.restartMs} ms to healthy (empty database: ${res.emptyStartMs} ms); ${out.done}/${r.agents} agents caught up ${r.missedEach} missed messages each in ${res.catchUpMs} ms (${res.catchUpMsgsPerSec} msgs/s)`,
    );
    return res;
  } finally {
    await worker.call('close').catch(() => {});
    await worker.stop();
    await relay.stop();
  }
}
