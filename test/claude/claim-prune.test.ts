// The claim files the monitor and the hooks write (one path per message) are pruned: SessionEnd drops
// the session's claims that no path can ask about again, SessionStart drops anyone's older than
// CLAIM_MAX_AGE_MS. The hooks run as Claude Code runs them (the built CLI through scripts/relay).
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CLAIM_MAX_AGE_MS } from '../../adapters/claude/hooks.js';
import { claimDelivery } from '../../adapters/claude/session-state.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, WsRpc } from '../helpers/ws-client.js';
import { expectedAgentId, hookEnv, logLines, projectDir, readJson, runHook, type Session } from './fixtures/harness.js';

function newSession(dir: string, relayUrl: string, name: string, id: string): Session {
  const home = join(dir, 'relay-home');
  return { id, home, cwd: projectDir(join(dir, 'projects'), name), env: hookEnv({ AGENT_RELAY_URL: relayUrl, AGENT_RELAY_HOME: home }) };
}

function claimsDir(s: Session, agentId: string): string {
  return join(s.home, 'claude', 'delivered', encodeURIComponent(agentId));
}

function claims(s: Session, agentId: string): number[] {
  try {
    return readdirSync(claimsDir(s, agentId))
      .map(Number)
      .sort((a, b) => a - b);
  } catch {
    return [];
  }
}

function storedCursor(s: Session, agentId: string, relayUrl: string): number | undefined {
  return readJson(join(s.home, 'agents', `${encodeURIComponent(agentId)}.json`)).relays[relayUrl].cursor;
}

t.test('SessionEnd drops the claims below the oldest unread message and moves the monitor cursor up to it; claims above stay', async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const observer = await WsRpc.connect(t, relay.wsUrl);
  const lead = await connectAgent(t, relay.wsUrl, { id: 'lead' });
  const s = newSession(dir, relay.url, 'prune', 'abcd0001-prune');
  const id = expectedAgentId(s.cwd, s.id);
  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  const start = storedCursor(s, id, relay.url);
  t.equal(start, 0, "SessionStart stored the relay's cursor for the monitor to resume after");
  const send = async (body: string) => (await lead.rpc.call('message/send', { to: id, body })).message.id as number;

  // Three handed over by UserPromptSubmit (claimed by the hook, read); then one no hook has seen yet
  // (unread, no claim) and one the monitor printed (its claim; not read until a hook runs).
  const handed = [await send('one'), await send('two'), await send('three')];
  t.match((await runHook(t, 'UserPromptSubmit', s)).stdout, `#${handed[2]} from lead`, 'UserPromptSubmit hands the first three over');
  const waiting = await send('not seen yet');
  const printed = await send('printed by the monitor');
  t.ok(claimDelivery(s.home, id, printed, 'monitor'), 'the monitor claims the fifth');
  t.same(claims(s, id), [...handed, printed], 'four claims');

  t.equal((await runHook(t, 'SessionEnd', s, { reason: 'prompt_input_exit' })).code, 0, 'SessionEnd ran');
  t.same(claims(s, id), [printed], `the claims of #${handed.join(', #')} (read, below the oldest unread #${waiting}) are dropped; #${printed}'s stays`);
  t.equal(storedCursor(s, id, relay.url), waiting - 1, "the monitor's cursor moved up to below the oldest unread message");

  // The session resumes: its next prompt hands #waiting over and marks #printed read. Nothing is unread
  // at the next SessionEnd: every claim goes, and the folder.
  t.equal((await runHook(t, 'SessionStart', s, { source: 'resume' })).code, 0, 'SessionStart (resume) ran');
  const next = await runHook(t, 'UserPromptSubmit', s, { prompt: 'next' });
  t.match(next.stdout, `#${waiting} from lead`, `the next prompt hands #${waiting} over`);
  t.notMatch(next.stdout, `#${printed} from`, `but not #${printed}, which the monitor printed`);
  for (const m of [waiting, printed]) t.equal((await observer.call('message/get', { id: m })).deliveries.find((d: any) => d.agentId === id)?.state, 'read', `#${m} is read`);
  t.equal((await runHook(t, 'SessionEnd', s, { reason: 'prompt_input_exit' })).code, 0, 'SessionEnd ran again');
  t.same(claims(s, id), [], 'every claim is dropped');
  t.notOk(existsSync(claimsDir(s, id)), 'and the emptied folder');
  t.equal(storedCursor(s, id, relay.url), printed, 'the cursor is at the last claimed message');
  t.same(logLines(s.home), [], 'no problem was logged');
});

t.test(`SessionStart drops any agent's claims older than ${CLAIM_MAX_AGE_MS / 86_400_000} days, and leaves newer ones`, async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const s = newSession(dir, relay.url, 'old', 'abcd0002-old');
  const root = join(s.home, 'claude', 'delivered');
  // Claims a killed session left behind (no SessionEnd), one old and one recent, plus one all old.
  const old = (Date.now() - CLAIM_MAX_AGE_MS - 3600_000) / 1000;
  for (const [agent, files] of [
    ['vm-claude-gone-11111111', { 7: old, 8: null }],
    ['vm-claude-gone-22222222', { 3: old }],
  ] as const) {
    mkdirSync(join(root, agent), { recursive: true });
    for (const [name, time] of Object.entries(files)) {
      writeFileSync(join(root, agent, name), 'monitor');
      if (time !== null) utimesSync(join(root, agent, name), time, time);
    }
  }
  t.equal((await runHook(t, 'SessionStart', s)).code, 0, 'SessionStart ran');
  t.same(readdirSync(join(root, 'vm-claude-gone-11111111')), ['8'], 'the old claim is dropped, the recent one stays');
  t.notOk(existsSync(join(root, 'vm-claude-gone-22222222')), 'a folder left empty is removed');
  t.same(logLines(s.home), [], 'no problem was logged');
});
