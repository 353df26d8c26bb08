import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent } from '../helpers/ws-client.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

t.test('the built client library works from plain JavaScript (no TypeScript loader)', async (t) => {
  const relay = await startRelay(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const script = join(t.testdir(), 'plain.mjs');
  writeFileSync(
    script,
    `import { createRelayClient } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist/client/index.js')).href)};
const relay = createRelayClient({ url: process.argv[2], agent: { id: 'plain-js' } });
await relay.connect();
const sent = await relay.send('bob', 'hello from plain JavaScript');
for await (const m of relay.messages()) {
  console.log(JSON.stringify({ sent: sent.message.id, reply: m.body, replyTo: m.replyTo }));
  break;
}
await relay.close();
`,
  );
  // A clean environment: no tap/tsx loaders, so only plain JavaScript can run.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP') && !k.startsWith('_TAPJS') && !k.startsWith('TS_NODE')));
  const child = spawn(process.execPath, [script, relay.url], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await bob.rpc.until(() => bob.rpc.messages().length === 1, 10_000, 'the plain-JS message');
  const got = bob.rpc.messages()[0]!;
  t.equal(got.body, 'hello from plain JavaScript');
  await bob.rpc.call('message/send', { to: 'plain-js', body: 'hi back', replyTo: got.id });
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  t.equal(code, 0, `exit 0 (stderr: ${err})`);
  t.same(JSON.parse(out.trim()), { sent: got.id, reply: 'hi back', replyTo: got.id });
});
