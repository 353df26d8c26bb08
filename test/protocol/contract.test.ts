import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { ConfigError, loadConfig } from '../../broker/config.js';
import { generateAgentId } from '../../broker/domain/handlers/agent.js';
import { AgentIdSchema } from '../../protocol/common.js';
import { CLOSE_CODES, shouldReconnect } from '../../protocol/close-codes.js';
import { errorReply } from '../../protocol/error-reply.js';
import { errorKind, ERRORS, httpStatusFor, RelayError, type ErrorName } from '../../protocol/errors.js';
import { DISCOVER_METHOD, METHODS } from '../../protocol/method-table.js';

/**
 * The code agrees with the written contract (docs/PROTOCOL.md): error catalogue, method table,
 * close-code ranges, config refusals, generated agent ids.
 */

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const PROTOCOL_PATH = join(repoRoot, 'docs', 'PROTOCOL.md');
const doc = readFileSync(PROTOCOL_PATH, 'utf8');

/** Rows of the markdown table under a `## heading` (up to the next `## `), first cell unquoted. */
function tableFirstCells(heading: string): string[] {
  const start = doc.indexOf(`\n## ${heading}`);
  if (start < 0) return [];
  const rest = doc.slice(start + 1);
  const end = rest.indexOf('\n## ', 1);
  const section = end < 0 ? rest : rest.slice(0, end);
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => /^\| `([^`]+)`/.exec(line)![1]!);
}

t.test('every error code in the catalogue is documented in PROTOCOL.md', async (t) => {
  for (const [name, e] of Object.entries(ERRORS)) {
    t.match(doc, new RegExp(`(^|[^0-9])${e.code}(?![0-9])`), `${name} (${e.code}) appears in PROTOCOL.md`);
  }
});

t.test('every documented error code is in the catalogue', async (t) => {
  const documented = new Set([...doc.matchAll(/-32\d{3}/g)].map((m) => Number(m[0])));
  const known = new Set<number>(Object.values(ERRORS).map((e) => e.code));
  t.ok(documented.size > 0, 'PROTOCOL.md names error codes');
  for (const code of documented) t.ok(known.has(code), `${code} from PROTOCOL.md is in ERRORS`);
});

t.test('every error code has an HTTP status and the catalogue holds exactly 13 codes', async (t) => {
  const entries = Object.entries(ERRORS);
  // 16 meanings on 13 wire codes: 405 beside -32600's 400, 403 beside -32001's 401, rate limited (429) beside too large (413).
  t.equal(entries.length, 16, 'the catalogue size is pinned at 16 entries');
  t.equal(new Set(entries.map(([, e]) => e.code)).size, 13, 'on 13 distinct codes');
  for (const [name, e] of entries) {
    t.ok(Number.isInteger(e.httpStatus) && e.httpStatus >= 400 && e.httpStatus <= 599, `${name} has an HTTP error status (${e.httpStatus})`);
    const reply = errorReply(new RelayError(name as ErrorName));
    t.equal(reply.status, e.httpStatus, `errorReply answers ${name} with ${e.httpStatus}`);
    // A client tells apart what it must act on differently: whether to retry (403 and 401 need not be).
    const read = errorKind(reply.error.code, reply.error.data)!;
    t.equal(ERRORS[read].retryable, e.retryable, `a client reads ${name} back from the wire as ${e.retryable ? '' : 'not '}retryable`);
    t.ok(e.message.length > 0, `${name} has a message`);
  }
  for (const e of new Set(entries.map(([, e]) => e.code))) {
    t.equal(httpStatusFor(e), entries.find(([, x]) => x.code === e)![1].httpStatus, `httpStatusFor(${e}) is its first entry's`);
  }
  t.equal(httpStatusFor(-1), 500, 'an unknown code maps to 500');
  t.equal(ERRORS.unauthorized.httpStatus, 401, 'unauthorized is 401');
  t.equal(ERRORS.tooLarge.httpStatus, 413, 'too large is 413');
  t.equal(ERRORS.tooLarge.retryable, false, 'too large is not retryable');
  t.equal(ERRORS.rateLimited.code, ERRORS.tooLarge.code, 'rate limited keeps -32005 on the wire');
  t.equal(ERRORS.rateLimited.httpStatus, 429, 'rate limited is 429');
  t.equal(ERRORS.rateLimited.retryable, true, 'rate limited is retryable');
  const limited = errorReply(new RelayError('rateLimited', 'rate limited: slow down', { retryAfterMs: 1500 }));
  t.same(limited.error.data, { retryAfterMs: 1500, retryable: true }, 'a rate-limit refusal says it is retryable, and when');
  t.same(limited.headers, { 'retry-after': '2' }, 'Retry-After in whole seconds, rounded up');
});

t.test('every method in the PROTOCOL.md methods table exists in METHODS', async (t) => {
  const documented = tableFirstCells('Methods');
  t.equal(documented.length, 25, 'the methods table has 25 rows');
  for (const name of documented) {
    t.ok(Object.hasOwn(METHODS, name) || name === DISCOVER_METHOD, `${name} is implemented`);
  }
  t.ok(documented.includes(DISCOVER_METHOD), 'rpc.discover is documented');
  // The table must not have been misparsed into another table (targets, HTTP routes).
  t.notOk(
    documented.some((n) => n.startsWith('tag:') || n.startsWith('GET ') || n.startsWith('POST ')),
    'only method rows were read',
  );
});

t.test('every method in METHODS has a row in the PROTOCOL.md methods table', async (t) => {
  const documented = new Set(tableFirstCells('Methods'));
  for (const name of Object.keys(METHODS)) t.ok(documented.has(name), `${name} is documented`);
});

t.test('close codes 4000–4499 mean reconnect and 4500–4999 mean do not retry', async (t) => {
  let reconnect = 0;
  let stop = 0;
  for (let c = 4000; c < 4500; c++) if (shouldReconnect(c)) reconnect++;
  for (let c = 4500; c < 5000; c++) if (!shouldReconnect(c)) stop++;
  t.equal(reconnect, 500, 'every code in 4000–4499 reconnects');
  t.equal(stop, 500, 'no code in 4500–4999 reconnects');
  for (const name of ['shutdown', 'slowConsumer', 'missedPongs', 'rateLimited'] as const) {
    t.ok(CLOSE_CODES[name] >= 4000 && CLOSE_CODES[name] < 4500, `${name} (${CLOSE_CODES[name]}) is in the reconnect range`);
  }
  for (const name of ['unauthorized', 'protocolViolation', 'replaced'] as const) {
    t.ok(CLOSE_CODES[name] >= 4500 && CLOSE_CODES[name] < 5000, `${name} (${CLOSE_CODES[name]}) is in the do-not-retry range`);
  }
  t.equal(new Set(Object.values(CLOSE_CODES)).size, Object.keys(CLOSE_CODES).length, 'close codes are distinct');
});

function configError(env: NodeJS.ProcessEnv, overrides: Parameters<typeof loadConfig>[1] = {}): Error | null {
  try {
    loadConfig(env, overrides);
    return null;
  } catch (err) {
    return err as Error;
  }
}

t.test('a malformed AGENT_RELAY_PORT is refused with a message naming it', async (t) => {
  for (const bad of ['abc', '70000', '-1', '1.5', '80x']) {
    const err = configError({ AGENT_RELAY_PORT: bad });
    t.ok(err instanceof ConfigError, `AGENT_RELAY_PORT=${bad} throws a ConfigError`);
    t.match(err?.message, 'AGENT_RELAY_PORT', `AGENT_RELAY_PORT=${bad}: the message names the variable`);
  }
  t.equal(loadConfig({ AGENT_RELAY_PORT: '5000' }).port, 5000, 'a good port is parsed');
  t.equal(loadConfig({}).port, 4850, 'the default port is 4850');
});

t.test('a malformed AGENT_RELAY_SYNC is refused with a message naming it', async (t) => {
  for (const bad of ['OFF', 'fast', 'EXTRA']) {
    const err = configError({ AGENT_RELAY_SYNC: bad });
    t.ok(err instanceof ConfigError, `AGENT_RELAY_SYNC=${bad} throws a ConfigError`);
    t.match(err?.message, 'AGENT_RELAY_SYNC', `AGENT_RELAY_SYNC=${bad}: the message names the variable`);
  }
  t.equal(loadConfig({}).sync, 'FULL', 'the default is FULL');
  t.equal(loadConfig({ AGENT_RELAY_SYNC: 'NORMAL' }).sync, 'NORMAL', 'NORMAL is accepted');
});

t.test('a short AGENT_RELAY_TOKEN is refused without echoing it', async (t) => {
  const err = configError({ AGENT_RELAY_TOKEN: 'short-secret' });
  t.ok(err instanceof ConfigError, 'throws a ConfigError');
  t.match(err?.message, 'AGENT_RELAY_TOKEN', 'names the variable');
  t.notMatch(err?.message ?? '', 'short-secret', 'does not echo the token');
});

t.test('binding a non-loopback host without a token is refused unless insecure', async (t) => {
  for (const host of ['0.0.0.0', '192.168.1.10', '::']) {
    const err = configError({ AGENT_RELAY_HOST: host });
    t.ok(err instanceof ConfigError, `${host} without a token is refused`);
    t.match(err?.message, 'AGENT_RELAY_TOKEN', `${host}: the message names AGENT_RELAY_TOKEN`);
  }
  t.equal(loadConfig({ AGENT_RELAY_HOST: '0.0.0.0', AGENT_RELAY_TOKEN: 'a-long-enough-relay-token' }).host, '0.0.0.0', 'with a token it starts');
  t.equal(loadConfig({ AGENT_RELAY_HOST: '0.0.0.0', AGENT_RELAY_INSECURE: 'true' }).insecure, true, 'with AGENT_RELAY_INSECURE=true it starts');
  t.equal(loadConfig({ AGENT_RELAY_HOST: '0.0.0.0' }, { insecure: true }).host, '0.0.0.0', 'with the --insecure override it starts');
  for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) {
    t.equal(loadConfig({ AGENT_RELAY_HOST: host }).host, host, `loopback ${host} needs no token`);
  }
  const badInsecure = configError({ AGENT_RELAY_HOST: '0.0.0.0', AGENT_RELAY_INSECURE: 'maybe' });
  t.match(badInsecure?.message, 'AGENT_RELAY_INSECURE', 'a malformed AGENT_RELAY_INSECURE is named');
});

t.test('a generated agent id is lowercase [a-z0-9-] ending in 8 hex chars', async (t) => {
  const shape = /^[a-z0-9-]+-[0-9a-f]{8}$/;
  const example = generateAgentId({ host: 'macmini2', client: 'codex', rig: 'live', cwd: '/Users/me/src/agent-relay' });
  t.match(example, /^macmini2-codex-live-agent-relay-[0-9a-f]{8}$/, 'host, client, rig, basename of cwd, 8 hex chars');
  const inputs = [
    {},
    { host: 'MacMini2.LOCAL', client: 'Codex CLI', rig: 'Live', cwd: '/Users/Me/My Project/' },
    { host: 'héllo_wörld', client: '🚀', cwd: 'C:\\work\\repo' },
    { host: '---', client: '...', rig: '   ' },
    { host: 'h'.repeat(300), cwd: `/x/${'y'.repeat(300)}` },
    { cwd: '/' },
  ];
  for (const input of inputs) {
    const id = generateAgentId(input);
    t.match(id, shape, `${JSON.stringify(input).slice(0, 60)} → ${id.slice(0, 40)}`);
    t.equal(id, id.toLowerCase(), 'lowercase');
    t.ok(AgentIdSchema.safeParse(id).success, 'a valid agent id for the schema');
  }
  t.match(generateAgentId({}), /^agent-[0-9a-f]{8}$/, 'with nothing to go on the prefix is "agent"');
  const a = generateAgentId({ host: 'h', client: 'c' });
  const b = generateAgentId({ host: 'h', client: 'c' });
  t.not(a, b, 'two ids from the same inputs differ');
});
