import { join } from 'node:path';
import t from 'tap';
import { spawnRelay } from '../helpers/relay-process.js';

/**
 * A relay process stopped (SIGSTOP: a laptop lid, a VM pause, a debugger) and continued. The
 * heartbeats an HTTP agent sent meanwhile wait in the kernel; the presence sweep must not judge
 * the agent stale before they are read, or it releases the claim of an agent that was on time.
 */

const TTL_MS = 3000;
const HEARTBEAT_MS = 700;
const PAUSE_MS = 5000;

t.test('a 5 s SIGSTOP of the relay does not release the claim of an HTTP agent heartbeating every 700 ms', async (t) => {
  const relay = await spawnRelay(t, {
    dbPath: join(t.testdir(), 'relay.db'),
    // A short sweep interval: a sweep is always due while the relay is stopped.
    env: { STALE_TTL_MS: String(TTL_MS), AGENT_RELAY_PRESENCE_INTERVAL_MS: '250' },
  });
  const rpc = async (method: string, params: Record<string, unknown>) => {
    const res = await fetch(`${relay.url}/rpc`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
    const reply = (await res.json()) as { result?: any; error?: unknown };
    if (reply.error) throw new Error(`${method} failed: ${JSON.stringify(reply.error)}`);
    return reply.result;
  };
  const { agentToken } = await rpc('agent/register', { id: 'worker' });
  const me = { agentId: 'worker', agentToken };
  const { task } = await rpc('task/create', { title: 'long job', target: 'worker', from: 'ext:ci' });
  await rpc('task/claim', { ...me, id: task.id });
  // The control: an agent that never heartbeats still goes offline, a full TTL after the relay resumed.
  const quiet = await rpc('agent/register', { id: 'quiet' });
  const quietTask = (await rpc('task/create', { title: 'abandoned job', target: 'quiet', from: 'ext:ci' })).task;
  await rpc('task/claim', { agentId: 'quiet', agentToken: quiet.agentToken, id: quietTask.id });

  // Heartbeats go out on time whatever the relay does; the ones sent during a stop queue up.
  const beats: Array<Promise<unknown>> = [];
  const timer = setInterval(() => beats.push(rpc('agent/heartbeat', me).catch((err: unknown) => err)), HEARTBEAT_MS);
  t.teardown(() => {
    clearInterval(timer);
    try {
      process.kill(relay.pid, 'SIGCONT');
    } catch {
      // already gone
    }
  });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // Twice: whether the resumed relay runs its timers before reading the waiting input varies.
  for (let round = 0; round < 2; round++) {
    await sleep(2 * HEARTBEAT_MS);
    process.kill(relay.pid, 'SIGSTOP');
    await sleep(PAUSE_MS);
    process.kill(relay.pid, 'SIGCONT');
  }
  const resumed = Date.now();
  await sleep(TTL_MS + 1000);
  clearInterval(timer);
  await Promise.all(beats);

  const after = (await rpc('task/get', { id: task.id })).task;
  t.equal(after.claimedBy, 'worker', `the claim is kept (claimedBy ${after.claimedBy}, status ${after.status})`);
  const { agents } = await rpc('agent/list', {});
  const status = (id: string) => agents.find((a: { id: string }) => a.id === id)?.status;
  t.not(status('worker'), 'offline', 'the heartbeating agent never looked stale');
  const offline = (await rpc('event/list', { kind: 'agent.offline' })).events as Array<{ agentId: string; at: number }>;
  t.same(
    offline.map((e) => e.agentId),
    ['quiet'],
    'only the silent agent went offline',
  );
  t.ok(offline[0] && offline[0].at >= resumed + TTL_MS - 1000, 'and not before a full TTL after the relay resumed');
  t.equal((await rpc('task/get', { id: quietTask.id })).task.claimedBy, null, "the silent agent's claim is released");
  t.match(relay.stdout(), /"stoppedMs":\d+.*the relay was not running/, 'the relay logged that it had been stopped');
  t.equal(await relay.stop('SIGTERM'), 0, 'it stops cleanly');
});
