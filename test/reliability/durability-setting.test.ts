import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { spawnRelay, type RelayProcess } from '../helpers/relay-process.js';
import { connectAgent } from '../helpers/ws-client.js';
import { figure, uniqueDir } from './support.js';

/**
 * PRAGMA synchronous is per connection and not stored in the file, and better-sqlite3 quietly runs
 * NORMAL under WAL unless told otherwise. So the relay's own connection is asked (GET /healthz
 * reports the value it runs with) on a fresh database, on a reopened WAL database, and after a
 * SIGKILL left a WAL behind. test/store/durability.test.ts covers the store in-process; this is
 * the real process, end to end.
 */

async function storage(relay: RelayProcess): Promise<{ synchronous: string; journalMode: string }> {
  const res = await fetch(`${relay.url}/healthz`);
  const body = (await res.json()) as { storage: { synchronous: string; journalMode: string } };
  return body.storage;
}

for (const sync of ['FULL', 'NORMAL'] as const) {
  t.test(`AGENT_RELAY_SYNC=${sync}: the relay's connection runs synchronous=${sync} fresh, reopened and after a crash`, async (t) => {
    const dbPath = join(uniqueDir(t), 'relay.db');
    const env = { AGENT_RELAY_SYNC: sync };
    t.notOk(existsSync(dbPath), 'the database does not exist yet');

    const fresh = await spawnRelay(t, { dbPath, env });
    const s1 = await storage(fresh);
    t.same(s1, { synchronous: sync, journalMode: 'wal' }, `fresh database: synchronous=${sync}, WAL`);
    const a = await connectAgent(t, fresh.wsUrl, { id: 'writer' });
    for (let i = 0; i < 20; i++) await a.rpc.call('message/send', { to: 'writer', body: `fresh-${i}` });
    t.equal(await fresh.stop('SIGTERM'), 0, 'a clean stop');

    // The file is WAL on disk now; a reopen must set synchronous again.
    const probe = new Database(dbPath, { readonly: true });
    t.equal(probe.pragma('journal_mode', { simple: true }), 'wal', 'the file stays in WAL mode between runs');
    probe.close();
    const reopened = await spawnRelay(t, { dbPath, env });
    const s2 = await storage(reopened);
    t.same(s2, { synchronous: sync, journalMode: 'wal' }, `reopened WAL database: synchronous=${sync}`);

    // Crash with writes in flight: the next open runs WAL recovery first.
    const b = await connectAgent(t, reopened.wsUrl, { id: 'writer', agentToken: a.token });
    const inflight = Array.from({ length: 200 }, (_, i) => b.rpc.call('message/send', { to: 'writer', body: `crash-${i}` }).catch(() => null));
    await new Promise((r) => setTimeout(r, 5));
    const exit = await reopened.kill9();
    t.equal(exit.signal, 'SIGKILL', 'killed with SIGKILL mid-load');
    await Promise.all(inflight);
    t.ok(existsSync(`${dbPath}-wal`), 'the crash left a WAL file behind');
    const afterCrash = await spawnRelay(t, { dbPath, env });
    const s3 = await storage(afterCrash);
    t.same(s3, { synchronous: sync, journalMode: 'wal' }, `after a crash: synchronous=${sync}`);
    const check = new Database(dbPath, { readonly: true });
    t.equal(check.pragma('integrity_check', { simple: true }), 'ok', 'integrity_check ok after the crash');
    check.close();
    figure(t, `durability-setting sync=${sync}`, { fresh: s1.synchronous, reopened: s2.synchronous, after_crash: s3.synchronous, journal: s3.journalMode });
    t.equal(await afterCrash.stop('SIGTERM'), 0, 'and it stops cleanly');
  });
}
