import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import type { CallbackPolicy } from '../../broker/domain/callbacks.js';
import { guardedLookup, isPrivateAddress } from '../../broker/domain/ssrf.js';
import { startRelay } from '../helpers/relay.js';
import { connectAgent, type WsRpc } from '../helpers/ws-client.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Callback SSRF guard. A canary HTTP server listens on 127.0.0.1:PORT (and on [::1]:PORT) and
 * counts hits; tasks get callback URLs spelling loopback every way WHATWG URL parsing and the
 * resolver accept, plus cloud metadata and private ranges. With AGENT_RELAY_ALLOW_PRIVATE_CALLBACKS
 * off (the default) the relay accepts these URLs at task/create and refuses them at delivery,
 * before connecting (IP literals) or in the guarded DNS lookup (host names, checked on the address
 * actually connected to). With the setting on, the same canary is reached: the test can fail.
 */

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
/** One attempt each: a refused callback is a dead letter at once, so "the dispatcher has run" is observable. */
// maxAttempts above 1: a refused address must be dead-lettered at once, not retried.
const POLICY: Partial<CallbackPolicy> = { maxAttempts: 5, timeoutMs: 1000, random: () => 0.5 };

interface Canary {
  port: number;
  hits: string[];
  v6: boolean;
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Loopback-only listeners on one port (IPv4, and IPv6 when the machine has ::1) that count requests. */
async function startCanary(t: Test): Promise<Canary> {
  const canary: Canary = { port: 0, hits: [], v6: false };
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    canary.hits.push(req.url ?? '');
    req.resume();
    res.writeHead(200).end('canary');
  };
  const servers: http.Server[] = [];
  t.teardown(async () => {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  });
  const v4 = http.createServer(handler);
  await listen(v4, 0, '127.0.0.1');
  servers.push(v4);
  canary.port = (v4.address() as AddressInfo).port;
  const v6 = http.createServer(handler);
  try {
    await listen(v6, canary.port, '::1');
    servers.push(v6);
    canary.v6 = true;
  } catch {
    // no IPv6 loopback here (or the port is taken on it): the [::1] cases still check the refusal message
  }
  return canary;
}

interface Case {
  name: string;
  url: string;
  /** The address the refusal names (after WHATWG normalisation). */
  address: string;
}

function loopbackCases(port: number): Case[] {
  return [
    { name: 'dotted loopback', url: `http://127.0.0.1:${port}/dotted`, address: '127.0.0.1' },
    { name: 'short form 127.1', url: `http://127.1:${port}/short`, address: '127.0.0.1' },
    { name: 'decimal 2130706433', url: `http://2130706433:${port}/decimal`, address: '127.0.0.1' },
    { name: 'hex 0x7f.0.0.1', url: `http://0x7f.0.0.1:${port}/hex`, address: '127.0.0.1' },
    { name: 'octal 0177.0.0.1', url: `http://0177.0.0.1:${port}/octal`, address: '127.0.0.1' },
    { name: 'IPv6 loopback [::1]', url: `http://[::1]:${port}/v6`, address: '::1' },
    { name: 'IPv4-mapped [::ffff:127.0.0.1]', url: `http://[::ffff:127.0.0.1]:${port}/mapped`, address: '::ffff:7f00:1' },
    { name: 'unspecified 0.0.0.0', url: `http://0.0.0.0:${port}/unspecified`, address: '0.0.0.0' },
    { name: 'host name localhost (DNS)', url: `http://localhost:${port}/localhost`, address: '127.0.0.1 (for localhost)' },
  ];
}

/** IPv4 loopback, metadata and LAN addresses carried inside IPv6 spellings (refused, not all routable here). */
function embeddedIpv4Cases(port: number): Case[] {
  return [
    { name: 'IPv4-compatible [::127.0.0.1]', url: `http://[::127.0.0.1]:${port}/compat`, address: '::7f00:1' },
    { name: 'IPv4-translated [::ffff:0:127.0.0.1]', url: `http://[::ffff:0:127.0.0.1]:${port}/translated`, address: '::ffff:0:7f00:1' },
    { name: 'mapped, spelled out [0:0:0:0:0:ffff:127.0.0.1]', url: `http://[0:0:0:0:0:ffff:127.0.0.1]:${port}/long`, address: '::ffff:7f00:1' },
    { name: '6to4 loopback [2002:7f00:1::]', url: `http://[2002:7f00:1::]:${port}/6to4`, address: '2002:7f00:1::' },
    { name: '6to4 metadata [2002:a9fe:a9fe::1]', url: 'http://[2002:a9fe:a9fe::1]/latest/meta-data', address: '2002:a9fe:a9fe::1' },
  ];
}

/**
 * One dispatcher pass, awaited, behind a safety net: a dispatcher that never settles (say, one that
 * retries without end) fails the test in seconds, and teardown then stops it. Never a timing assertion.
 */
async function pass(relay: { callbacks: { run(): Promise<void> } }, ms = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const net = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`dispatcher pass did not finish within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([relay.callbacks.run(), net]);
  } finally {
    clearTimeout(timer);
  }
}

async function createAll(rpc: WsRpc, cases: Case[]): Promise<Map<Case, number>> {
  const ids = new Map<Case, number>();
  for (const c of cases) {
    const r = await rpc.call('task/create', { title: `ssrf ${c.name}`, target: 'worker', callbackUrl: c.url });
    ids.set(c, r.task.id as number);
  }
  return ids;
}

/** Wait until every task's single callback reached a final state, and return those rows. */
async function finalRows(rpc: WsRpc, ids: Map<Case, number>): Promise<Map<Case, any>> {
  const rows = new Map<Case, any>();
  await waitFor(async () => {
    for (const [c, id] of ids) {
      const { callbacks } = await rpc.call('task/get', { id });
      if (callbacks.length !== 1 || callbacks[0].state === 'pending') return false;
      rows.set(c, callbacks[0]);
    }
    return true;
  }, 'every callback to be delivered or dead-lettered');
  return rows;
}

t.test('allowPrivateCallbacks off: loopback in every spelling, metadata and private ranges are refused before connecting', async (t) => {
  const canary = await startCanary(t);
  const relay = await startRelay(t, { callbackSecret: SECRET }, { callbackPolicy: POLICY });
  t.equal(relay.config.allowPrivateCallbacks, false, 'the default is off');
  const boss = await connectAgent(t, relay.wsUrl, { id: 'boss' });
  await connectAgent(t, relay.wsUrl, { id: 'worker' });

  const cases: Case[] = [
    ...loopbackCases(canary.port),
    { name: 'cloud metadata', url: 'http://169.254.169.254/latest/meta-data', address: '169.254.169.254' },
    { name: 'private 10/8', url: `http://10.0.0.1:${canary.port}/ten`, address: '10.0.0.1' },
    { name: 'private 192.168/16', url: `http://192.168.1.1:${canary.port}/lan`, address: '192.168.1.1' },
    ...embeddedIpv4Cases(canary.port),
  ];
  // task/create takes these URLs (the contract allows refusing at delivery); the delivery refuses them.
  const ids = await createAll(boss.rpc, cases);
  t.equal(ids.size, cases.length, 'every task was created with its callback URL');
  await pass(relay);
  const rows = await finalRows(boss.rpc, ids);

  for (const c of cases) {
    const row = rows.get(c);
    t.match(row, { state: 'dead', attempts: 1, lastStatus: null, url: c.url }, `${c.name}: dead letter, no HTTP status`);
    t.equal(row.lastError, `callback address ${c.address} is private, loopback or link-local`, `${c.name}: refused by the guard, naming ${c.address}`);
  }
  t.equal(canary.hits.length, 0, `the canary got zero hits (got ${JSON.stringify(canary.hits)})`);
  t.ok(relay.logs.filter((l) => l.msg === 'callback dead-lettered').length >= cases.length, 'each refusal is logged as a dead letter');
});

t.test('DNS: the guarded lookup refuses a name that resolves to loopback, and lets it through only when private targets are allowed', async (t) => {
  const canary = await startCanary(t);
  const post = (allowPrivate: boolean) =>
    new Promise<{ status?: number; code?: string; message?: string }>((resolve) => {
      const req = http.request(`http://localhost:${canary.port}/direct-${allowPrivate}`, { method: 'POST', lookup: guardedLookup(allowPrivate), agent: false, timeout: 2000 }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode! }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ code: err.code!, message: err.message }));
      req.end('{}');
    });

  const refused = await post(false);
  t.match(refused, { code: 'EBLOCKED', message: /^callback address 127\.0\.0\.1 \(for localhost\) is private, loopback or link-local$/ }, 'refused on the resolved address');
  t.equal(canary.hits.length, 0, 'nothing connected');

  const allowed = await post(true);
  t.same(allowed, { status: 200 }, 'allowed: the same request, through the same lookup, reaches the canary');
  t.same(canary.hits, ['/direct-true']);
});

t.test('allowPrivateCallbacks on: the same loopback spellings DO reach the canary (the guard is what stops them)', async (t) => {
  const canary = await startCanary(t);
  const relay = await startRelay(t, { callbackSecret: SECRET, allowPrivateCallbacks: true }, { callbackPolicy: POLICY });
  const boss = await connectAgent(t, relay.wsUrl, { id: 'boss' });
  await connectAgent(t, relay.wsUrl, { id: 'worker' });

  const cases = loopbackCases(canary.port).filter((c) => canary.v6 || c.address !== '::1');
  const ids = await createAll(boss.rpc, cases);
  await pass(relay);
  const rows = await finalRows(boss.rpc, ids);
  for (const c of cases) t.match(rows.get(c), { state: 'delivered', attempts: 1, lastStatus: 200, lastError: null }, `${c.name}: delivered`);
  t.same([...canary.hits].sort(), cases.map((c) => new URL(c.url).pathname).sort(), 'the canary was hit once per spelling');
});

t.test('isPrivateAddress: internal ranges in their IPv4, IPv6, mapped, translated, compatible and 6to4 spellings; public addresses pass', async (t) => {
  for (const a of [
    '127.0.0.1',
    '127.255.0.9',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.0.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '::1',
    '::',
    'fe80::1',
    'fd00::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:a9fe:a9fe',
    '::127.0.0.1',
    '::7f00:1',
    '::8.8.8.8',
    '::ffff:0:7f00:1',
    '::ffff:0:127.0.0.1',
    '0:0:0:0:0:ffff:7f00:1',
    '2002:7f00:1::',
    '2002:a9fe:a9fe::1',
    '2002:c0a8:101::',
    'fe80::1%eth0',
    '64:ff9b:1::a9fe:a9fe',
    '2001:0:4136:e378:8000:63bf:80ff:fffe',
    '100::1',
    'not-an-ip',
  ]) {
    t.equal(isPrivateAddress(a), true, `${a} is refused`);
  }
  for (const a of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700:4700::1111', '2001:4860:4860::8888', '::ffff:8.8.8.8', '::ffff:0:808:808', '2002:808:808::1']) {
    t.equal(isPrivateAddress(a), false, `${a} is allowed`);
  }
});
