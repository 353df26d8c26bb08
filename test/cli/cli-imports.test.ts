import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { childEnv, ROOT, spawnChild } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';

/**
 * A short command pays for every module it loads, so the built CLI loads the relay's own
 * dependencies (uWebSockets.js, better-sqlite3, pino) only for `serve`, and the WebSocket client
 * only for commands that hold a socket. Node's module hooks record every package the real
 * `node bin/agent-relay.js` imports.
 */
const HEAVY = ['better-sqlite3', 'uWebSockets.js', '@btc-vision/uwebsockets.js', 'pino', 'zod', 'prom-client'];

function hooksFile(dir: string): string {
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `export async function resolve(specifier, context, next) {
  if (!specifier.startsWith('.') && !specifier.startsWith('node:') && !specifier.startsWith('file:')) process.stderr.write('imported ' + specifier + '\\n');
  return next(specifier, context);
}
`,
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  return register;
}

async function importsOf(t: Test, register: string, args: string[], env: Record<string, string>): Promise<string[]> {
  const child = spawnChild(t, process.execPath, ['--import', register, join(ROOT, 'bin', 'agent-relay.js'), ...args], { env: childEnv(env, (k) => k.startsWith('AGENT_RELAY_')) });
  const exit = await child.exited;
  t.equal(exit.code, 0, `agent-relay ${args.join(' ')} exits 0 (stderr: ${child.stderr().slice(-500)})`);
  return [...new Set([...child.stderr().matchAll(/^imported (\S+)$/gm)].map((m) => m[1]!))];
}

t.test("the CLI imports none of the relay's dependencies to show help or send a message", async (t) => {
  const relay = await startRelay(t);
  const dir = t.testdir();
  const register = hooksFile(dir);
  const env = { AGENT_RELAY_HOME: join(dir, 'home'), AGENT_RELAY_URL: relay.url };

  const help = await importsOf(t, register, ['--help'], env);
  t.ok(help.includes('commander'), `the hook sees imports (--help loaded: ${help.join(', ')})`);
  t.same(
    help.filter((p) => HEAVY.includes(p) || p === 'ws'),
    [],
    '--help loads no relay dependency and no WebSocket client',
  );

  await importsOf(t, register, ['register', '--id', 'lazy'], env);
  const send = await importsOf(t, register, ['send', '--as', 'lazy', 'broadcast', 'hello'], env);
  t.same(
    send.filter((p) => HEAVY.includes(p) || p === 'ws'),
    [],
    `send loads no relay dependency and no WebSocket client (loaded: ${send.join(', ')})`,
  );
});
