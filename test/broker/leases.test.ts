import Database from 'better-sqlite3';
import t from 'tap';
import { resourcesOverlap } from '../../protocol/lease-patterns.js';
import { ManualClock, onPostgres, startRelay } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';
import { connectAgent, rpcErrorOf, WsRpc } from '../helpers/ws-client.js';
import { seeded } from '../helpers/random.js';

interface LeaseRecord {
  id: number;
  agentId: string;
  mode: 'exclusive' | 'shared';
  resources: string[];
  token: number;
  acquiredAt: number;
  expiresAt: number;
  releasedAt: number | null;
  endedBy: string | null;
}

const conflicting = (a: Pick<LeaseRecord, 'agentId' | 'mode' | 'resources'>, b: Pick<LeaseRecord, 'agentId' | 'mode' | 'resources'>) =>
  a.agentId !== b.agentId && (a.mode === 'exclusive' || b.mode === 'exclusive') && a.resources.some((x) => b.resources.some((y) => resourcesOverlap(x, y)));

t.test('acquire grants all or none; a conflict names the holder, its reason and expiry; shared leases coexist', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });

  const a = await alice.rpc.call('lease/acquire', { resources: ['src/auth/**', 'db:migrations'], ttlMs: 60_000, reason: 'rewriting login' });
  t.equal(a.lease.agentId, 'alice');
  t.equal(a.lease.mode, 'exclusive', 'exclusive by default');
  t.same(a.lease.resources, ['src/auth/**', 'db:migrations']);
  t.equal(a.token, a.lease.token, 'the answer carries the fencing token');
  t.ok(a.lease.expiresAt - a.lease.acquiredAt === 60_000, 'expires ttlMs after it was granted');

  const refused = await rpcErrorOf(bob.rpc.call('lease/acquire', { resources: ['docs/**', 'src/auth/login.ts'], mode: 'shared' }));
  t.equal(refused.code, -32003, 'an overlapping lease of another agent: conflict');
  t.match(refused.message, /src\/auth\/login\.ts overlaps src\/auth\/\*\*, held exclusive by alice \("rewriting login"\)/);
  t.match(refused.error.data, {
    holder: 'alice',
    reason: 'rewriting login',
    expiresAt: a.lease.expiresAt,
    leaseId: a.lease.id,
    mode: 'exclusive',
    held: 'src/auth/**',
    requested: 'src/auth/login.ts',
    conflicts: [{ leaseId: a.lease.id, holder: 'alice' }],
  });
  const docs = await alice.rpc.call('lease/list', { resource: 'docs/**' });
  t.same(docs.leases, [], 'all or none: docs/** was not granted either');

  t.equal((await rpcErrorOf(bob.rpc.call('lease/acquire', { resources: ['db:migrations'] }))).code, -32003, 'a name conflicts with the same name');
  const seeds = await bob.rpc.call('lease/acquire', { resources: ['db:seeds', 'src/authz/**'] });
  t.ok(seeds.token > a.token, 'tokens rise across leases');

  // Shared with shared: fine. Exclusive against shared: refused, both ways.
  const s1 = await alice.rpc.call('lease/acquire', { resources: ['vendor/**'], mode: 'shared', reason: 'reading' });
  const s2 = await bob.rpc.call('lease/acquire', { resources: ['vendor/lib/*.js'], mode: 'shared' });
  t.ok(s1.lease.id && s2.lease.id, 'two shared leases on overlapping resources coexist');
  const ex = await rpcErrorOf(bob.rpc.call('lease/acquire', { resources: ['vendor/lib/a.js'] }));
  t.equal(ex.code, -32003, 'exclusive against a shared lease of another agent is refused');
  t.equal(ex.error.data?.holder, 'alice');
  t.equal(ex.error.data?.mode, 'shared');

  // An agent's own leases never stand in its way.
  const own = await alice.rpc.call('lease/acquire', { resources: ['src/auth/session.ts'] });
  t.equal(own.lease.agentId, 'alice', 'overlapping its own exclusive lease is allowed');

  const listed = await bob.rpc.call('lease/list', {});
  t.same(
    listed.leases.map((l: LeaseRecord) => l.id),
    [a.lease.id, seeds.lease.id, s1.lease.id, s2.lease.id, own.lease.id],
    'lease/list shows every lease in force, in id order',
  );
  t.same(
    (await bob.rpc.call('lease/list', { holder: 'bob' })).leases.map((l: LeaseRecord) => l.id),
    [seeds.lease.id, s2.lease.id],
  );
  t.same(
    (await bob.rpc.call('lease/list', { resource: 'src/auth/x.ts' })).leases.map((l: LeaseRecord) => l.id),
    [a.lease.id],
    'filtered by overlap with a resource',
  );
  t.same((await bob.rpc.call('lease/list', { limit: 2 })).more, true, 'a page stopped at limit says more');
});

t.test('invalid or ambiguous resources are refused with -32602 naming the resource; at most 64 leases an agent', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  for (const bad of ['/etc/passwd', 'src/../x', 'src/a**b', 'src/{a,b}', 'db:*', 'src//x']) {
    const e = await rpcErrorOf(alice.rpc.call('lease/acquire', { resources: ['ok/**', bad] }));
    t.equal(e.code, -32602, `${bad} is refused`);
    t.ok(e.message.includes('resources') && e.message.includes(JSON.stringify(bad).slice(1, -1)), `the message names the field and the resource: ${e.message}`);
  }
  t.equal((await rpcErrorOf(alice.rpc.call('lease/acquire', { resources: ['x'], ttlMs: 999 }))).code, -32602, 'ttlMs under the minimum');
  t.equal((await rpcErrorOf(alice.rpc.call('lease/acquire', { resources: [] }))).code, -32602, 'no resources');
  for (let i = 0; i < 64; i++) await alice.rpc.call('lease/acquire', { resources: [`many/${i}`] });
  const full = await rpcErrorOf(alice.rpc.call('lease/acquire', { resources: ['many/64'] }));
  t.equal(full.code, -32005, 'past 64 leases in force: too large');
  t.match(full.message, /holds 64 leases/);
  const observer = await WsRpc.connect(t, relay.wsUrl);
  t.equal((await rpcErrorOf(observer.call('lease/acquire', { resources: ['x'] }))).code, -32004, 'an observer cannot hold a lease');
  t.equal((await observer.call('lease/list', { limit: 1000 })).leases.length, 64, 'but may list them');
});

t.test('20 agents racing for overlapping globs: never two conflicting holders at once', async (t) => {
  const relay = await startRelay(t);
  const agents = await Promise.all(Array.from({ length: 20 }, (_, i) => connectAgent(t, relay.wsUrl, { id: `racer-${String(i).padStart(2, '0')}` })));
  const pool = ['src/auth/**', 'src/auth/login.ts', 'src/*/login.ts', 'src/billing/**', 'src/**/*.test.ts', 'src/billing/pay.test.ts', 'db:migrations', 'docs', 'docs/api/*.md', 'README.md'];
  const rand = seeded(42);
  /** What each client saw: [answer received, release sent] lies within the lease's real hold. */
  const seen: Array<{ lease: LeaseRecord; from: number; to: number }> = [];
  let refusals = 0;
  const ROUNDS = 10;
  // Each round an agent wants one or two resources and retries until it gets them (or gives up).
  await Promise.all(
    agents.map(async (agent, i) => {
      for (let round = 0; round < ROUNDS; round++) {
        const resources = [...new Set([pool[rand(pool.length)]!, ...(rand(2) ? [pool[rand(pool.length)]!] : [])])];
        const mode = rand(4) === 0 ? 'shared' : 'exclusive';
        for (let attempt = 0; attempt < 200; attempt++) {
          try {
            const { lease, token } = await agent.rpc.call('lease/acquire', { resources, mode, ttlMs: 30_000, reason: `round ${round} of ${i}` });
            const from = performance.now();
            await new Promise((r) => setTimeout(r, 1 + rand(5)));
            const to = performance.now();
            await agent.rpc.call('lease/release', { leaseId: lease.id, token });
            seen.push({ lease, from, to });
            break;
          } catch (err) {
            if ((err as { code?: number }).code !== -32003) throw err;
            refusals++;
            await new Promise((r) => setTimeout(r, rand(3)));
          }
        }
      }
    }),
  );
  t.ok(seen.length > 150, `${seen.length} grants of ${20 * ROUNDS} wanted`);
  t.ok(refusals > 100, `${refusals} refusals: the race was contended`);

  // 1. What clients saw: no two conflicting grants were held at overlapping times.
  let clientOverlaps = 0;
  for (const [i, a] of seen.entries()) for (const b of seen.slice(i + 1)) if (conflicting(a.lease, b.lease) && a.from < b.to && b.from < a.to) clientOverlaps++;
  t.equal(clientOverlaps, 0, 'no two conflicting leases were seen held at once by their clients');

  // 2. The event log, replayed in commit order: every grant met no conflicting lease in force.
  const events: Array<{ kind: string; agentId: string; data: Record<string, any> }> = [];
  for (let since = 0; ; ) {
    const page = await agents[0]!.rpc.call('event/list', { since, limit: 1000 });
    events.push(...page.events);
    if (page.events.length < 1000) break;
    since = page.events.at(-1).id;
  }
  const inForce = new Map<number, { agentId: string; mode: 'exclusive' | 'shared'; resources: string[] }>();
  let replayViolations = 0;
  let acquired = 0;
  for (const e of events) {
    if (e.kind === 'lease.acquired') {
      acquired++;
      const lease = { agentId: e.agentId, mode: e.data.mode, resources: e.data.resources };
      for (const held of inForce.values()) if (conflicting(held, lease)) replayViolations++;
      inForce.set(e.data.leaseId, lease);
    } else if (e.kind === 'lease.released') inForce.delete(e.data.leaseId);
  }
  t.equal(acquired, seen.length, 'one lease.acquired event per grant');
  t.equal(replayViolations, 0, 'replayed in commit order, no grant met a conflicting lease in force');
  t.equal(inForce.size, 0, 'every lease was released');

  // 3. The database: conflicting leases' [acquired, released) intervals by the relay clock never overlap.
  if (onPostgres) {
    t.comment('3. reads the SQLite file: left out on PostgreSQL (the contract suite checks its lease rows)');
    return;
  }
  const db = new Database(relay.config.dbPath, { readonly: true });
  t.teardown(() => db.close());
  const rows = db.prepare('SELECT * FROM leases ORDER BY id').all() as Array<Record<string, any>>;
  t.equal(rows.length, seen.length, 'one row per grant');
  const tokens = rows.map((r) => r.token as number);
  t.same(
    [...tokens].sort((x, y) => x - y),
    tokens,
    'tokens rise with grants',
  );
  t.equal(new Set(tokens).size, tokens.length, 'no token was issued twice');
  let dbOverlaps = 0;
  let conflictingPairs = 0;
  const asLease = (r: Record<string, any>) => ({ agentId: r.agent_id as string, mode: r.mode as 'exclusive', resources: JSON.parse(r.resources) as string[] });
  for (const [i, a] of rows.entries()) {
    t.equal(a.ended_by, 'released');
    for (const b of rows.slice(i + 1)) {
      if (!conflicting(asLease(a), asLease(b))) continue;
      conflictingPairs++;
      if (a.acquired_at < b.released_at && b.acquired_at < a.released_at) dbOverlaps++;
    }
  }
  t.ok(conflictingPairs > 1000, `${conflictingPairs} pairs of grants conflict: each had to wait for the other`);
  t.equal(dbOverlaps, 0, 'in the database no two conflicting leases overlap in time');
});

t.test('expiry by the relay clock: an expired lease is free at once, the sweep records it, its holder hears', async (t) => {
  const clock = new ManualClock();
  const relay = await startRelay(t, { leaseSweepIntervalMs: 600_000 }, { clock });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  await observer.call('stream/subscribe', { topics: ['leases'] });

  const a = await alice.rpc.call('lease/acquire', { resources: ['build/**'], ttlMs: 1000 });
  t.equal((await rpcErrorOf(bob.rpc.call('lease/acquire', { resources: ['build/out.js'] }))).code, -32003, 'held before its TTL');
  clock.advance(999);
  t.equal((await rpcErrorOf(bob.rpc.call('lease/acquire', { resources: ['build/out.js'] }))).code, -32003, 'still held 1 ms before');
  clock.advance(1);
  t.same((await bob.rpc.call('lease/list', {})).leases, [], 'at its expiry it is no longer listed');
  const b = await bob.rpc.call('lease/acquire', { resources: ['build/out.js'] });
  t.equal(b.lease.agentId, 'bob', 'expired but not yet swept: free to another agent');

  const { events } = await bob.rpc.call('event/list', { since: 0 });
  t.same(
    events.filter((e: any) => e.kind.startsWith('lease.')).map((e: any) => [e.kind, e.data.leaseId, e.data.reason ?? null]),
    [
      ['lease.acquired', a.lease.id, null],
      ['lease.released', a.lease.id, 'expired'],
      ['lease.acquired', b.lease.id, null],
    ],
    'its end is recorded (expired) before the new grant',
  );
  const renew = await rpcErrorOf(alice.rpc.call('lease/renew', { leaseId: a.lease.id, token: a.token }));
  t.equal(renew.code, -32006, 'an expired lease cannot be renewed');
  t.match(renew.message, /ended \(expired\)/);
  await alice.rpc.until(() => alice.rpc.notifications.some((n) => n.method === 'lease/updated' && n.params.lease.endedBy === 'expired'), 3000, 'the holder hears of the expiry');
  await observer.until(() => observer.notifications.filter((n) => n.method === 'lease/updated').length === 3, 3000, 'observers hear every change');
  t.same(
    observer.notifications.filter((n) => n.method === 'lease/updated').map((n) => [n.params.event.kind, n.params.lease.id]),
    [
      ['lease.acquired', a.lease.id],
      ['lease.released', a.lease.id],
      ['lease.acquired', b.lease.id],
    ],
  );
});

t.test('the sweep ends leases whose TTL passed, each with an event', async (t) => {
  const relay = await startRelay(t, { leaseSweepIntervalMs: 50 });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const a = await alice.rpc.call('lease/acquire', { resources: ['tmp/**'], ttlMs: 1000 });
  await waitFor(async () => (await alice.rpc.call('event/list', { kind: 'lease.released' })).events.length === 1, 'the sweep recorded the expiry', 5000);
  const [e] = (await alice.rpc.call('event/list', { kind: 'lease.released' })).events;
  t.match(e, { agentId: 'alice', taskId: null, data: { leaseId: a.lease.id, token: a.token, reason: 'expired' } });
  t.ok(e.at >= a.lease.expiresAt, 'recorded at or after its expiry');
});

t.test('renewal issues a new token; the old one is stale for renew and release; only the holder may act', async (t) => {
  const relay = await startRelay(t);
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const observer = await WsRpc.connect(t, relay.wsUrl);
  await observer.call('stream/subscribe', { topics: ['leases'] });
  const a = await alice.rpc.call('lease/acquire', { resources: ['infra/**'], ttlMs: 5000 });
  const r1 = await alice.rpc.call('lease/renew', { leaseId: a.lease.id, token: a.token, ttlMs: 20_000 });
  t.ok(r1.token > a.token, 'a renewal answers a higher token');
  t.equal(r1.lease.id, a.lease.id, 'the same lease');
  t.equal(r1.lease.expiresAt, r1.lease.renewedAt + 20_000, 'expires ttlMs after the renewal');
  const r2 = await alice.rpc.call('lease/renew', { leaseId: a.lease.id, token: r1.token });
  t.equal(r2.lease.ttlMs, 20_000, 'without ttlMs the lease keeps its own');

  const stale = await rpcErrorOf(alice.rpc.call('lease/renew', { leaseId: a.lease.id, token: r1.token }));
  t.equal(stale.code, -32006, 'renewal by a stale token is refused');
  t.match(stale.message, new RegExp(`${r1.token} is stale .* newest token is ${r2.token}`));
  t.equal((await rpcErrorOf(alice.rpc.call('lease/release', { leaseId: a.lease.id, token: a.token }))).code, -32006, 'so is a release by one');

  const other = await rpcErrorOf(bob.rpc.call('lease/release', { leaseId: a.lease.id, token: r2.token }));
  t.equal(other.code, -32003, 'another agent cannot release it, even with its token');
  t.equal(other.error.data?.holder, 'alice');
  t.equal((await rpcErrorOf(bob.rpc.call('lease/renew', { leaseId: a.lease.id, token: r2.token }))).code, -32003, 'nor renew it');
  t.equal((await rpcErrorOf(alice.rpc.call('lease/release', { leaseId: 9999, token: 1 }))).code, -32002, 'an unknown lease: not found');

  const released = await alice.rpc.call('lease/release', { leaseId: a.lease.id, token: r2.token });
  t.equal(released.lease.endedBy, 'released');
  t.type(released.lease.releasedAt, 'number');
  const again = await rpcErrorOf(alice.rpc.call('lease/renew', { leaseId: a.lease.id, token: r2.token }));
  t.equal(again.code, -32006, 'a released lease cannot be renewed');
  t.match(again.message, /ended \(released\)/);
  t.ok((await bob.rpc.call('lease/acquire', { resources: ['infra/db'] })).lease, 'its resources are free again');

  const kinds = (await alice.rpc.call('event/list', {})).events.filter((e: any) => e.data.leaseId === a.lease.id).map((e: any) => [e.kind, e.data.token]);
  t.same(kinds, [
    ['lease.acquired', a.token],
    ['lease.renewed', r1.token],
    ['lease.renewed', r2.token],
    ['lease.released', r2.token],
  ]);
  await observer.until(() => observer.notifications.filter((n) => n.method === 'lease/updated').length === 5, 3000, 'five lease/updated');
});

t.test('an agent that goes offline loses its leases (stale TTL, or leaving), reason offline', async (t) => {
  const relay = await startRelay(t, { staleTtlMs: 300, presenceIntervalMs: 50 });
  const alice = await connectAgent(t, relay.wsUrl, { id: 'alice' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const a = await alice.rpc.call('lease/acquire', { resources: ['src/**'], ttlMs: 600_000 });
  const c = await carol.rpc.call('lease/acquire', { resources: ['docs/**'], ttlMs: 600_000 });
  t.equal((await rpcErrorOf(bob.rpc.call('lease/acquire', { resources: ['src/x.ts'] }))).code, -32003);

  alice.rpc.terminate();
  await waitFor(async () => (await bob.rpc.call('lease/list', { holder: 'alice' })).leases.length === 0, 'alice stale: her lease released', 5000);
  t.ok((await bob.rpc.call('lease/acquire', { resources: ['src/x.ts'] })).lease, 'her resources are free');
  const released = (await bob.rpc.call('event/list', { kind: 'lease.released' })).events;
  t.match(released, [{ agentId: 'alice', data: { leaseId: a.lease.id, reason: 'offline' } }]);
  const kinds = (await bob.rpc.call('event/list', {})).events.filter((e: any) => e.agentId === 'alice').map((e: any) => e.kind);
  t.same(kinds.slice(-2), ['agent.offline', 'lease.released'], 'released in the same commit as the offline');

  await carol.rpc.call('agent/update', { status: 'offline' });
  await waitFor(async () => (await bob.rpc.call('lease/list', { holder: 'carol' })).leases.length === 0, 'carol left: her lease released', 5000);
  t.match((await bob.rpc.call('event/list', { kind: 'lease.released' })).events.at(-1), { agentId: 'carol', data: { leaseId: c.lease.id, reason: 'offline' } });
  const offline = await rpcErrorOf(carol.rpc.call('lease/acquire', { resources: ['docs/**'] }));
  t.equal(offline.code, -32003, 'an offline agent is granted nothing');
  t.match(offline.message, /carol is offline/);
});
