import net from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { childEnv, spawnChild } from '../helpers/child.js';
import { waitFor } from '../helpers/wait.js';

/** Whether anything accepts a connection on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

// `npm start` runs the relay as npm → sh -c → node. A SIGTERM to npm used to leave the relay
// running on its port. --ignore-scripts skips prestart's rebuild, which would rewrite dist/ under
// the test files running beside this one; the start script itself still runs.
t.test('npm start runs the built relay with plain node and stops when npm is sent SIGTERM', async (t) => {
  const db = join(t.testdir(), 'relay.db');
  const npm = spawnChild(t, 'npm', ['start', '--ignore-scripts', '--', '--port', '0', '--db', db], { env: childEnv() });
  let port = 0;
  await waitFor(
    () => {
      port = Number(/"url":"http:\/\/127\.0\.0\.1:(\d+)"/.exec(npm.stdout())?.[1] ?? 0);
      return port > 0 || npm.stderr().includes('ERR');
    },
    'the relay\'s "listening" line',
    30_000,
  );
  t.ok(port > 0, `listening (stderr: ${npm.stderr()})`);
  t.match(npm.stdout(), /node --enable-source-maps dist\/broker\/main\.js/, 'the start script runs the compiled relay');
  t.notMatch(npm.stdout(), /tsx/, 'no TypeScript loader');
  t.ok(await accepts(port), 'the port answers');

  npm.kill('SIGTERM');
  await npm.exited;
  await waitFor(async () => !(await accepts(port)), 'the relay to let go of its port after npm exited', 10_000);
  t.pass('nothing listens on the port once npm has gone');
});
