import t from 'tap';
import { RelayRpcError } from '../../clients/errors.js';
import { RelayHttpClient } from '../../clients/http-client.js';
import { ERRORS } from '../../protocol/errors.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { WsRpc } from '../helpers/ws-client.js';

/**
 * Rate limited and too large share -32005 on the wire but not their meaning: rate limited is 429,
 * retryable (data.retryable, Retry-After); too large is 413 and never retryable. Checked over REST
 * and POST /rpc against a real relay, and as the client library reads them.
 */

type ErrorBody = { error: { code: number; message: string; data?: Record<string, unknown> } };

async function post(relay: TestRelay, path: string, body: string): Promise<{ status: number; retryAfter: string | null; body: ErrorBody }> {
  const r = await fetch(`${relay.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: r.status, retryAfter: r.headers.get('retry-after'), body: (await r.json()) as ErrorBody };
}

const send = (text: string) => JSON.stringify({ to: 'broadcast', body: text, from: 'ext:script' });
const rpcSend = (text: string) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/send', params: JSON.parse(send(text)) });

function clientView(body: ErrorBody): RelayRpcError {
  return new RelayRpcError(body.error.code, body.error.message, body.error.data);
}

for (const [route, path, frame] of [
  ['REST', '/api/messages', send],
  ['POST /rpc', '/rpc', rpcSend],
] as const) {
  t.test(`${route}: a too-large body is 413 and not retryable; a rate-limited request is 429 and retryable`, async (t) => {
    const relay = await startRelay(t, { maxFrameBytes: 4096, httpRateLimitPerSec: 1, httpRateBurst: 1 });

    const big = await post(relay, path, frame('x'.repeat(8 * 1024)));
    t.equal(big.status, 413, 'too large: 413');
    t.equal(big.body.error.code, ERRORS.tooLarge.code, '-32005');
    t.equal(big.body.error.data?.retryable, undefined, 'no retryable mark');
    t.equal(big.retryAfter, null, 'no Retry-After');
    t.equal(clientView(big.body).kind, 'tooLarge', 'the client reads it as too large');
    t.equal(clientView(big.body).retryable, false, 'and does not retry it');

    const limited = await post(relay, path, frame('small'));
    t.equal(limited.status, 429, 'rate limited: 429');
    t.equal(limited.body.error.code, ERRORS.rateLimited.code, 'still -32005 on the wire');
    t.equal(limited.body.error.data?.retryable, true, 'data.retryable is true');
    t.ok(Number(limited.body.error.data?.retryAfterMs) >= 1000, `data.retryAfterMs says when (${limited.body.error.data?.retryAfterMs})`);
    t.ok(Number(limited.retryAfter) >= 1, `Retry-After says when (${limited.retryAfter})`);
    t.equal(clientView(limited.body).kind, 'rateLimited', 'the client reads it as rate limited');
    t.equal(clientView(limited.body).retryable, true, 'and may retry it');
    t.equal(await relay.core.store.messages.maxId(), 0, 'neither request wrote anything');
  });
}

t.test('REST: too large found by the adapter (a full registry) is 413 and not retryable, as the HTTP client reads it', async (t) => {
  const relay = await startRelay(t, { maxAgents: 1 });
  const client = new RelayHttpClient({ url: relay.url });
  await client.call('agent/register', { id: 'first' });
  const err = await client.call('agent/register', { id: 'second' }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(err instanceof RelayRpcError, 'refused with a RelayRpcError');
  t.equal((err as RelayRpcError).code, ERRORS.tooLarge.code, '-32005');
  t.equal((err as RelayRpcError).kind, 'tooLarge', 'too large');
  t.equal((err as RelayRpcError).retryable, false, 'not retryable');

  const rest = await post(relay, '/api/agents', JSON.stringify({ id: 'third' }));
  t.equal(rest.status, 413, 'over REST: 413');
  t.equal(rest.body.error.code, ERRORS.tooLarge.code, '-32005');
});

t.test('WebSocket: a rate-limited frame carries data.retryable; a too-large frame does not', async (t) => {
  const relay = await startRelay(t, { maxFrameBytes: 4096, rateLimitPerSec: 1, rateBurst: 1 });
  const ws = await WsRpc.connect(t, relay.wsUrl);
  const big = await ws.sendRaw(rpcSend('x'.repeat(8 * 1024)));
  t.equal(big.error.code, ERRORS.tooLarge.code, 'too large: -32005');
  t.equal(big.error.data, undefined, 'with no retryable mark');
  t.equal(new RelayRpcError(big.error.code, big.error.message, big.error.data).retryable, false, 'the client does not retry it');
  const limited = await ws.sendRaw(rpcSend('small'));
  t.equal(limited.error.code, ERRORS.rateLimited.code, 'rate limited: -32005');
  t.equal(limited.error.data?.retryable, true, 'data.retryable is true');
  t.ok(limited.error.data?.retryAfterMs > 0, `data.retryAfterMs says when (${limited.error.data?.retryAfterMs})`);
  t.equal(new RelayRpcError(limited.error.code, limited.error.message, limited.error.data).retryable, true, 'the client may retry it');
});
