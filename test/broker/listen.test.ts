import t from 'tap';
import { startRelay } from '../helpers/relay.js';
import { connectAgent } from '../helpers/ws-client.js';

t.test('a port with a live listener fails start-up at once, naming it', async (t) => {
  const first = await startRelay(t);
  const started = Date.now();
  const err = await startRelay(t, { port: first.port, listenWaitMs: 30_000 }).catch((e: unknown) => e);
  t.equal((err as Error).message, `port ${first.port} is already in use (another relay?)`);
  t.ok(Date.now() - started < 30_000, 'it did not wait for TIME_WAIT: someone answers on that port');
});

t.test('a port held only by TIME_WAIT leftovers of the previous run is retried, with a warning', async (t) => {
  const dir = t.testdir();
  const first = await startRelay(t, {}, { dir });
  const port = first.port;
  const a = await connectAgent(t, first.wsUrl, { id: 'a' });
  await first.close(); // the relay closes a's socket first, so its side of the port sits in TIME_WAIT
  await a.rpc.closed;

  // Linux holds TIME_WAIT for 60 s; a short wait shows the retry path without waiting it out.
  const logs: Array<Record<string, unknown>> = [];
  const second = await startRelay(t, { port, listenWaitMs: 1200 }, { dir, logs }).then(
    (r) => r,
    (e: Error) => e,
  );
  if (!(second instanceof Error)) {
    // The kernel let go of the port early (nothing to show); still a valid start.
    t.equal(second.port, port, 'restarted on the same port');
    return;
  }
  t.match(second.message, `cannot listen on 127.0.0.1:${port}`);
  t.ok(
    logs.some((l) => String(l.msg).includes('TIME_WAIT')),
    'start-up logged that it was waiting for TIME_WAIT',
  );
});
