import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { codexVersionOf, olderThan, ServerNotices, TESTED_CODEX_VERSION } from '../../adapters/codex/server-notices.js';
import { ROOT, settle, setup } from './harness.js';

// The app-server's version at the handshake and its warnings, in the adapter's log.

t.test('the version is the token after the first "/" of userAgent, in the 0.171 and the older form', async (t) => {
  t.equal(codexVersionOf('agent_relay_codex/0.171.0 (Debian 12.0.0; x86_64) unknown (agent_relay_codex; 0.1.0)'), '0.171.0');
  t.equal(codexVersionOf('codex_cli_rs/0.150.0 (fake)'), '0.150.0');
  t.equal(codexVersionOf('no version here'), null);
  t.equal(codexVersionOf(undefined), null);
  t.ok(olderThan('0.150.0', TESTED_CODEX_VERSION));
  t.ok(olderThan('0.99.9', '0.171.0'), 'numeric, not string, order');
  t.notOk(olderThan('0.171.0', '0.171.0'));
  t.notOk(olderThan('0.172.0-alpha.1', '0.171.0'));
});

t.test('each distinct warning text is logged once; quiet notifications are swallowed; the rest go on', async (t) => {
  const lines: string[] = [];
  const n = new ServerNotices({ info: (m) => lines.push(`info: ${m}`), warn: (m) => lines.push(`warn: ${m}`) });
  for (let i = 0; i < 5; i++) t.ok(n.onNotification('deprecationNotice', { summary: 'includeTurns is deprecated', details: null }));
  t.ok(n.onNotification('warning', { threadId: 'T', message: 'Model metadata for `mock-model` not found.' }));
  t.ok(n.onNotification('warning', { threadId: 'T', message: 'Model metadata for `mock-model` not found.' }));
  t.ok(n.onNotification('configWarning', { summary: 'could not find bubblewrap', details: null }));
  t.notOk(n.onNotification('error', { error: { message: 'stream disconnected' }, willRetry: true }), 'error is logged and still reaches delivery');
  for (const m of ['remoteControl/status/changed', 'thread/goal/cleared', 'account/rateLimits/updated', 'thread/tokenUsage/updated']) t.ok(n.onNotification(m, {}), `${m} is quiet`);
  t.notOk(n.onNotification('turn/completed', { turn: { id: 'T1' } }));
  t.same(lines, [
    'warn: Codex deprecationNotice: includeTurns is deprecated',
    'warn: Codex warning: Model metadata for `mock-model` not found.',
    'warn: Codex configWarning: could not find bubblewrap',
    'warn: Codex error: stream disconnected (retrying)',
  ]);
});

t.test('an app-server older than the tested version draws a warning at the handshake; the tested one does not', async (t) => {
  const old = await setup(t, { fake: { version: '0.150.0' } });
  const b = old.startBridge();
  await old.ready();
  t.ok(b.logs.includes(`info: Codex app-server 0.150.0 (userAgent agent_relay_codex/0.150.0 (Fake 1.0; x86_64) unknown (agent_relay_codex; 0.1.0))`), 'the version logged');
  t.ok(
    b.logs.some((l) => l.startsWith(`warn: Codex app-server 0.150.0 is older than ${TESTED_CODEX_VERSION}`)),
    'and the warning',
  );
  const current = await setup(t);
  const c = current.startBridge();
  await current.ready();
  await settle(100);
  t.ok(c.logs.some((l) => l.startsWith(`info: Codex app-server ${TESTED_CODEX_VERSION} `)));
  t.notOk(
    c.logs.some((l) => l.includes('is older than')),
    'no warning for the tested version',
  );
});

t.test('TESTED_CODEX_VERSION is the @openai/codex the real-binary tests pin', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  t.equal(pkg.devDependencies['@openai/codex'], TESTED_CODEX_VERSION);
});
