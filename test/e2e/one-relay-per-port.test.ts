import { join } from 'node:path';
import t from 'tap';
import { loadUws } from '../../broker/transport/uws-loader.js';
import { RelayStartError, spawnRelay } from '../helpers/relay-process.js';
import { connectAgent } from '../helpers/ws-client.js';

/**
 * One relay per port, on both transports and across them: a second relay process started on the
 * port of a running one exits non-zero at once with one line naming the port (uWS would otherwise
 * share the port with SO_REUSEPORT and split the clients between two relays), and the first keeps
 * serving. Pairs with uWS run only where a native uWS build loads (not on Node 24 with glibc < 2.38).
 */

const uwsLoads = loadUws().build !== null;
const PAIRS: Array<['uws' | 'node', 'uws' | 'node']> = [
  ['uws', 'uws'],
  ['node', 'node'],
  ['uws', 'node'],
  ['node', 'uws'],
];

for (const [first, second] of PAIRS) {
  const needsUws = first === 'uws' || second === 'uws';
  t.test(
    `a ${second} relay on the port of a running ${first} relay exits at once with one line; the first keeps serving`,
    { skip: needsUws && !uwsLoads ? 'no native uWebSockets.js build loads on this Node/glibc' : false },
    async (t) => {
      const dir = t.testdir();
      const a = await spawnRelay(t, { dbPath: join(dir, 'a.db'), env: { AGENT_RELAY_TRANSPORT: first } });
      t.match(a.stdout(), `"transport":"${first}"`, `the first relay runs ${first}`);
      const started = Date.now();
      const err = await spawnRelay(t, { dbPath: join(dir, 'b.db'), args: ['--port', String(a.port)], env: { AGENT_RELAY_TRANSPORT: second } }).then(
        () => new Error('the second relay started'),
        (e: unknown) => e,
      );
      const took = Date.now() - started;
      if (!(err instanceof RelayStartError)) throw err;
      t.match(err.stdout, `"transport":"${second}"`, `the second relay ran ${second}`);
      t.equal(err.exit.code, 1, 'exit code 1');
      t.equal(err.stderr, `agent-relay: port ${a.port} is already in use (another relay?)\n`, 'one line, no stack trace');
      // Start-up (tsx compiling the relay) takes about a second; the default TIME_WAIT wait is 65 s.
      t.ok(took < 15_000, `promptly (${took} ms)`);

      const health = await fetch(`${a.url}/healthz`);
      t.equal(health.status, 200, 'the first relay still answers HTTP');
      const { id } = await connectAgent(t, a.wsUrl, { id: 'after' });
      t.equal(id, 'after', 'and WebSocket');
      t.equal(await a.stop(), 0, 'and stops cleanly');
    },
  );
}
