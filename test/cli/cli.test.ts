import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { EXIT } from '../../clients/cli/context.js';
import { loadIdentity, saveIdentity } from '../../clients/cli/identity-store.js';
import { runCli } from '../../clients/cli/main.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { connectAgent } from '../helpers/ws-client.js';

/**
 * The `agent-relay` CLI run in-process through runCli against a real relay on an ephemeral
 * loopback port: output is captured through the Io the test supplies, `--json` output is parsed
 * and checked against the relay's own state (POST /rpc, WebSocket agents, the identity files).
 * The long-running commands (tail, monitor) and the bin itself are in cli-process.test.ts.
 */

interface CliRun {
  argv: string[];
  code: number;
  out: string;
  err: string;
}

interface Terminal {
  home: string;
  env: Record<string, string>;
  /** Run the CLI; resolves with exit code and captured output. */
  run(...argv: string[]): Promise<CliRun>;
  /** Run and require exit 0. */
  ok(...argv: string[]): Promise<CliRun>;
  /** Run with --json, require exit 0 and one JSON document on stdout. */
  json(...argv: string[]): Promise<any>;
}

/** A shell: its own environment (AGENT_RELAY_URL, AGENT_RELAY_HOME, ...) and terminal-ness. */
function terminal(t: Test, env: Record<string, string>, opts: { isTTY?: boolean } = {}): Terminal {
  const run = async (...argv: string[]): Promise<CliRun> => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), isTTY: opts.isTTY ?? false, env: { ...env } });
    return { argv, code, out: out.join('\n'), err: err.join('\n') };
  };
  const ok = async (...argv: string[]): Promise<CliRun> => {
    const r = await run(...argv);
    t.equal(r.code, EXIT.ok, `agent-relay ${argv.join(' ')} exits 0`, { stderr: r.err });
    return r;
  };
  const json = async (...argv: string[]): Promise<any> => {
    const r = await ok('--json', ...argv);
    try {
      return JSON.parse(r.out);
    } catch {
      t.fail(`agent-relay --json ${argv.join(' ')} prints one JSON document`, { stdout: r.out });
      return {};
    }
  };
  return { home: env.AGENT_RELAY_HOME ?? '', env, run, ok, json };
}

interface Setup {
  relay: TestRelay;
  dir: string;
  cli: Terminal;
}

async function setup(t: Test, overrides: Parameters<typeof startRelay>[1] = {}, integrations?: Array<Record<string, unknown>>): Promise<Setup> {
  const dir = t.testdir();
  if (integrations) {
    writeFileSync(join(dir, 'integrations.json'), JSON.stringify({ integrations }));
    overrides = { ...overrides, integrationsPath: join(dir, 'integrations.json') };
  }
  const relay = await startRelay(t, overrides, { dir });
  const cli = terminal(t, { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: join(dir, 'home') });
  return { relay, dir, cli };
}

/** A JSON-RPC call over real HTTP, for the relay's own view of things. */
async function rpc(relay: TestRelay, method: string, params: Record<string, unknown> = {}, token?: string): Promise<any> {
  const res = await fetch(`${relay.url}/rpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const frame = (await res.json()) as { result?: any; error?: { code: number; message: string } };
  if (frame.error) throw new Error(`${method}: ${frame.error.code} ${frame.error.message}`);
  return frame.result;
}

function storedFile(home: string, id: string): string {
  return join(home, 'agents', `${encodeURIComponent(id)}.json`);
}

/** What the store holds for `id` on `url` (default: the one relay it has a token for), as loadIdentity returns it. */
function stored(home: string, id: string, url?: string): any {
  const file = JSON.parse(readFileSync(storedFile(home, id), 'utf8'));
  const on = url ?? Object.keys(file.relays)[0]!;
  return { id, url: on, ...file.relays[on] };
}

/** The identity fields POST /rpc takes for an agent the CLI registered. */
function as(home: string, id: string): { agentId: string; agentToken: string } {
  return { agentId: id, agentToken: stored(home, id).token };
}

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Split the lines of a table printed by format.table into cells, using where each header
 * word starts: a row whose cells are not under their header comes out wrong.
 */
function tableCells(text: string, header: string[]): { header: string; rows: string[][] } {
  const lines = text.split('\n');
  const head = lines[0]!;
  const starts = header.map((h) => head.indexOf(h));
  for (let i = 0; i < starts.length; i++) {
    if (starts[i]! < 0 || (i > 0 && starts[i]! <= starts[i - 1]!)) throw new Error(`header ${JSON.stringify(head)} does not have column ${header[i]} in order`);
  }
  const rows = lines.slice(1).map((line) => starts.map((s, i) => line.slice(s, i + 1 < starts.length ? starts[i + 1] : undefined)));
  for (const [r, row] of rows.entries()) {
    // A cell is its text then padding: text that spills into the next column is not aligned.
    for (let i = 0; i + 1 < row.length; i++) {
      if (row[i]!.length && !/(^|\S) {2,}$|^ *$/.test(row[i]!)) throw new Error(`row ${r + 1} column ${header[i]} is not followed by its padding: ${JSON.stringify(lines[r + 1])}`);
    }
  }
  return { header: head, rows: rows.map((row) => row.map((c) => c.trim())) };
}

// ---------------------------------------------------------------------------------------------

t.test('register stores a private token, re-register reuses it, and an id is generated when none is given', async (t) => {
  const { relay, dir, cli } = await setup(t);

  const first = await cli.json('register', '--id', 'alice', '--label', 'Alice A', '--tags', 'oncall, dev', '--caps', 'review');
  t.equal(first.agent.id, 'alice');
  t.equal(first.agent.label, 'Alice A');
  t.same(first.agent.tags, ['oncall', 'dev'], 'comma lists are split and trimmed');
  t.same(first.agent.capabilities, ['review']);
  t.equal(first.agent.client, 'cli');
  t.type(first.agentToken, 'string');

  const file = storedFile(cli.home, 'alice');
  t.equal(statSync(file).mode & 0o777, 0o600, 'the token file is private to the user');
  t.equal(statSync(join(cli.home, 'agents')).mode & 0o777, 0o700, 'and so is its folder');
  t.same(stored(cli.home, 'alice'), { id: 'alice', token: first.agentToken, url: relay.url });
  // The stored token is the one the relay accepts for alice.
  const hb = await rpc(relay, 'agent/heartbeat', { agentId: 'alice', agentToken: first.agentToken });
  t.equal(hb.agent.id, 'alice');

  const again = await cli.json('register', '--id', 'alice', '--label', 'Alice B');
  t.equal(again.agentToken, first.agentToken, 're-register presents the stored token and keeps it');
  t.equal(stored(cli.home, 'alice').token, first.agentToken);
  const listed = await rpc(relay, 'agent/list', {});
  t.equal(listed.agents.find((a: any) => a.id === 'alice').label, 'Alice B', 'the relay took the new label');
  t.same(listed.agents.find((a: any) => a.id === 'alice').tags, ['oncall', 'dev'], 'fields not given are kept');

  // Another home has no token for alice: the relay refuses the takeover and nothing is stored there.
  const stranger = terminal(t, { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: join(dir, 'stranger') });
  const taken = await stranger.run('register', '--id', 'alice', '--label', 'Mallory');
  t.equal(taken.code, EXIT.refused);
  t.equal(
    taken.err,
    `agent-relay: agent "alice" is already registered on ${relay.url} and no token for it is stored in ${stranger.home} (registered from another terminal or machine?): pick another --id, or run from the AGENT_RELAY_HOME that registered it`,
  );
  t.notOk(existsSync(storedFile(stranger.home, 'alice')));
  t.equal((await rpc(relay, 'agent/list', {})).agents.find((a: any) => a.id === 'alice').label, 'Alice B');

  const human = await cli.ok('register', '--id', 'bob');
  t.equal(human.out, `registered bob (token stored in ${cli.home}); act as it with --as bob`);

  const generated = await cli.json('register');
  t.match(generated.agent.id, /^[a-z0-9][a-z0-9-]*-[0-9a-f]{8}$/, 'an id is generated from host and cwd');
  t.equal(stored(cli.home, generated.agent.id).token, generated.agentToken);
  t.ok((await rpc(relay, 'agent/list', {})).agents.some((a: any) => a.id === generated.agent.id));
  const inbox = await cli.json('inbox', '--as', generated.agent.id);
  t.same(inbox.messages, [], 'the generated identity is usable with --as');

  const fromEnv = terminal(t, { ...cli.env, AGENT_RELAY_CAPS: 'deploy, rollback' });
  t.same((await fromEnv.json('register', '--id', 'carol')).agent.capabilities, ['deploy', 'rollback'], 'AGENT_RELAY_CAPS is the default --caps');
});

t.test('agents: an aligned table, --json, and the --tag --cap --status filters', async (t) => {
  const { relay, cli } = await setup(t);
  await cli.ok('register', '--id', 'alice', '--label', 'Alice with a long label', '--tags', 'oncall,dev', '--caps', 'review');
  await cli.ok('register', '--id', 'bob', '--tags', 'dev');
  await cli.ok('register', '--id', 'carol-the-third', '--caps', 'deploy,review', '--not-ready');
  await cli.ok('register', '--id', 'dave');
  await rpc(relay, 'agent/update', { status: 'offline', ...as(cli.home, 'dave') });

  const relayAgents = (await rpc(relay, 'agent/list', {})).agents as any[];
  const r = await cli.ok('agents');
  const columns = ['ID', 'STATUS', 'READY', 'LABEL', 'CLIENT', 'TAGS', 'CAPS', 'LAST SEEN'];
  const { rows } = tableCells(r.out, columns);
  t.equal(rows.length, 4, 'a row per agent');
  for (const a of relayAgents) {
    const row = rows.find((cells) => cells[0] === a.id);
    t.ok(row, `a row for ${a.id}`);
    t.same(row!.slice(0, 7), [a.id, a.status, a.ready ? 'yes' : 'no', a.label, 'cli', a.tags.join(','), a.capabilities.join(',')], `${a.id}: every cell under its header`);
    t.match(row![7], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  }
  t.same(rows.map((c) => [c[0], c[1], c[2]]).sort(), [
    ['alice', 'online', 'yes'],
    ['bob', 'online', 'yes'],
    ['carol-the-third', 'online', 'no'],
    ['dave', 'offline', 'yes'],
  ]);

  const json = await cli.json('agents');
  t.same(json.agents, relayAgents, '--json prints what the relay answered');

  const ids = async (...filter: string[]) => ((await cli.json('agents', ...filter)).agents as any[]).map((a) => a.id).sort();
  t.same(await ids('--tag', 'dev'), ['alice', 'bob']);
  t.same(await ids('--cap', 'deploy'), ['carol-the-third']);
  t.same(await ids('--cap', 'review'), ['alice', 'carol-the-third']);
  t.same(await ids('--status', 'offline'), ['dave']);
  t.same(await ids('--status', 'online'), ['alice', 'bob', 'carol-the-third']);
  t.equal((await cli.ok('agents', '--tag', 'nobody')).out, 'no agents');
});

t.test('agents and status list every agent when agent/list answers in several pages', async (t) => {
  const { relay, cli } = await setup(t);
  // 90 agents of 16 KiB meta pass agent/list's 1 MiB page budget: the CLI must follow nextCursor.
  const meta = { blob: 'm'.repeat(16 * 1024 - 20) };
  const ids = Array.from({ length: 90 }, (_, i) => `paged-${String(i).padStart(2, '0')}`);
  for (const id of ids) await rpc(relay, 'agent/register', { id, meta });
  t.ok((await rpc(relay, 'agent/list', { limit: 1000 })).nextCursor, 'the relay answers in pages');
  t.same(
    ((await cli.json('agents')).agents as any[]).map((a) => a.id),
    ids,
    'agents --json has every agent once, in id order',
  );
  t.equal(tableCells((await cli.ok('agents')).out, ['ID', 'STATUS', 'READY', 'LABEL', 'CLIENT', 'TAGS', 'CAPS', 'LAST SEEN']).rows.length, 90, 'the table has a row per agent');
  t.match(await cli.json('status'), { agentsByStatus: { online: 90 } }, 'status counts them all');
});

t.test('send: to an id, a tag and broadcast, with --channel --subject --claimable --reply-to, reaching WebSocket agents', async (t) => {
  const { relay, cli } = await setup(t);
  await cli.ok('register', '--id', 'alice');
  const ops = await connectAgent(t, relay.wsUrl, { id: 'ops-bot', tags: ['ops'], channels: ['ops'] });
  const dev = await connectAgent(t, relay.wsUrl, { id: 'dev-bot', tags: ['dev'], channels: ['dev'] });

  const direct = await cli.json('send', '--as', 'alice', 'ops-bot', 'hello ops', '--subject', 'greeting');
  t.match(direct.message, { from: 'alice', to: 'ops-bot', subject: 'greeting', body: 'hello ops', channel: null, replyTo: null, claimable: false, taskId: null });
  t.same(direct.recipients, ['ops-bot']);
  t.same(direct.warnings, []);
  await ops.rpc.until(() => ops.rpc.messages().some((m) => m.id === direct.message.id), 5000, 'the direct message on the socket');
  t.same(
    ops.rpc.messages().find((m) => m.id === direct.message.id),
    direct.message,
    'the agent got exactly what the relay stored',
  );

  const tagged = await cli.json('send', '--as', 'alice', 'tag:dev', 'build broke');
  t.same(tagged.recipients, ['dev-bot']);
  await dev.rpc.until(() => dev.rpc.messages().some((m) => m.id === tagged.message.id), 5000, 'the tag message');

  // An observer (no --as) broadcasts claimable work on the ops channel.
  const work = await cli.json('send', 'broadcast', 'rotate the keys', '--channel', 'ops', '--subject', 'Rotate keys', '--claimable');
  t.match(work.message, { from: 'ext:cli', to: 'broadcast', channel: 'ops', subject: 'Rotate keys', claimable: true });
  t.type(work.message.taskId, 'number');
  t.match(work.task, { id: work.message.taskId, title: 'Rotate keys', status: 'open', target: 'broadcast', channel: 'ops', messageId: work.message.id });
  t.same([...work.recipients].sort(), ['alice', 'ops-bot'], 'fan-out on ops: agents hearing ops or every channel, not dev-bot');
  await ops.rpc.until(() => ops.rpc.messages().some((m) => m.id === work.message.id), 5000, 'the broadcast');
  t.match(
    ops.rpc.messages().find((m) => m.id === work.message.id),
    { claimable: true, taskId: work.message.taskId, channel: 'ops' },
  );
  t.match((await rpc(relay, 'task/get', { id: work.message.taskId })).task, { status: 'open', claimedBy: null });
  // dev-bot did not get it: a later message to dev-bot arrives right after the tag one.
  const fence = await cli.json('send', '--as', 'alice', 'dev-bot', 'fence');
  await dev.rpc.until(() => dev.rpc.messages().some((m) => m.id === fence.message.id), 5000, 'the fence');
  t.same(
    dev.rpc.messages().map((m) => m.id),
    [tagged.message.id, fence.message.id],
  );

  const reply = await cli.json('send', '--as', 'alice', '--reply-to', String(direct.message.id), 'ops-bot', 'follow up');
  t.match(reply.message, { replyTo: direct.message.id, threadId: direct.message.id });
  await ops.rpc.until(() => ops.rpc.messages().some((m) => m.id === reply.message.id), 5000, 'the reply');
  t.equal(ops.rpc.messages().find((m) => m.id === reply.message.id)!.replyTo, direct.message.id);

  const before = ops.rpc.messages().length;
  const human = await cli.ok('send', '--as', 'alice', 'ops-bot', 'plain words');
  await ops.rpc.until(() => ops.rpc.messages().length > before, 5000, 'the human-mode message');
  const id = ops.rpc.messages().at(-1)!.id;
  t.equal(human.out, `sent #${id} to ops-bot`);
  const humanWork = await cli.ok('send', '--as', 'alice', 'ops-bot', 'another job', '--claimable');
  const task = (await rpc(relay, 'task/list', {})).tasks.at(-1);
  t.equal(humanWork.out, `sent #${task.messageId} to ops-bot; task #${task.id}`);

  const bad = await cli.run('send', '--as', 'alice', '--reply-to', '999', 'ops-bot', 'to nothing');
  t.equal(bad.code, EXIT.refused, 'a reply to an unknown message is refused');
  t.match(bad.err, /replyTo: no message 999/);
});

t.test('send renders warnings: offline, not ready, nobody matched', async (t) => {
  const { relay, cli } = await setup(t);
  await cli.ok('register', '--id', 'alice');
  await cli.ok('register', '--id', 'dave');
  await cli.ok('register', '--id', 'carol', '--not-ready');
  await rpc(relay, 'agent/update', { status: 'offline', ...as(cli.home, 'dave') });

  const offline = await cli.ok('send', '--as', 'alice', 'dave', 'are you there?');
  const lines = offline.out.split('\n');
  t.match(lines[0], /^sent #\d+ to dave$/);
  t.equal(lines[1], 'warning: dave is offline: it gets the message when it comes back');
  t.equal(lines.length, 2);
  const offlineJson = await cli.json('send', '--as', 'alice', 'dave', 'still there?');
  t.same(offlineJson.warnings, [{ agentId: 'dave', reason: 'offline' }]);
  const inbox = await cli.json('inbox', '--as', 'dave');
  t.same(
    inbox.messages.map((m: any) => m.body),
    ['are you there?', 'still there?'],
    'the offline agent finds both in its inbox',
  );

  const notReady = await cli.ok('send', '--as', 'alice', 'carol', 'when you can');
  t.equal(notReady.out.split('\n')[1], 'warning: carol is not ready: the message waits in its inbox');

  const nobody = await cli.ok('send', '--as', 'alice', 'tag:nobody', 'anyone?', '--claimable');
  t.match(nobody.out, /^sent #\d+ to nobody; task #\d+\nwarning: no agent matched the target \(a claimable task still waits for one\)$/);
  const none = await cli.json('send', '--as', 'alice', 'tag:nobody', 'anyone at all?');
  t.same(none.warnings, [{ agentId: '', reason: 'no_recipients' }]);
  t.same(none.recipients, []);
});

t.test('inbox: --json, human lines, --since, --limit, --unread and --mark-read', async (t) => {
  const { relay, cli } = await setup(t);
  await cli.ok('register', '--id', 'alice');
  await cli.ok('register', '--id', 'bob');
  await cli.ok('register', '--id', 'erin');
  const m1 = (await cli.json('send', '--as', 'alice', 'bob', 'first')).message;
  const m2 = (await cli.json('send', '--as', 'alice', 'bob', 'second', '--subject', 'Status')).message;
  await cli.ok('send', '--as', 'bob', 'alice', 'not for bob');
  const m3 = (await cli.json('send', '--as', 'alice', 'bob', 'third\nwith two lines')).message;

  const all = await cli.json('inbox', '--as', 'bob');
  t.same(all, { messages: [m1, m2, m3], cursor: m3.id }, "bob's inbox: his three messages, in order");

  const human = await cli.ok('inbox', '--as', 'bob');
  t.equal(human.out, [`#${m1.id} alice → bob first`, `#${m2.id} alice → bob Status: second`, `#${m3.id} alice → bob third with two lines`].join('\n'));

  t.same((await cli.json('inbox', '--as', 'bob', '--since', String(m1.id))).messages, [m2, m3]);
  t.same((await cli.json('inbox', '--as', 'bob', '--since', String(m3.id))).messages, []);
  t.same((await cli.json('inbox', '--as', 'bob', '--limit', '2')).messages, [m1, m2]);
  t.same((await cli.json('inbox', '--as', 'bob', '--unread')).messages, [m1, m2, m3], 'nothing is read yet');

  // Show two, marking them read: they leave the unread view, and the relay records them read.
  const marked = await cli.ok('inbox', '--as', 'bob', '--unread', '--limit', '2', '--mark-read');
  t.equal(marked.out.split('\n').length, 2);
  t.same((await cli.json('inbox', '--as', 'bob', '--unread')).messages, [m3]);
  const got = await rpc(relay, 'message/get', { id: m1.id, ...as(cli.home, 'bob') });
  t.equal(got.deliveries.find((d: any) => d.agentId === 'bob').state, 'read');
  const third = await rpc(relay, 'message/get', { id: m3.id, ...as(cli.home, 'bob') });
  t.not(third.deliveries.find((d: any) => d.agentId === 'bob').state, 'read', 'the one not shown is not marked');

  await cli.ok('inbox', '--as', 'bob', '--unread', '--mark-read');
  t.same(await cli.json('inbox', '--as', 'bob', '--unread'), { messages: [], cursor: 0 });
  t.equal((await cli.ok('inbox', '--as', 'bob', '--unread')).out, 'no unread messages');
  t.same((await cli.json('inbox', '--as', 'bob')).messages, [m1, m2, m3], 'read messages stay in the inbox');
  t.equal((await cli.ok('inbox', '--as', 'erin')).out, 'no messages');

  const viaEnv = terminal(t, { ...cli.env, AGENT_RELAY_AGENT: 'bob' });
  t.same((await viaEnv.json('inbox')).messages, [m1, m2, m3], 'AGENT_RELAY_AGENT stands for --as');
});

t.test('search: ranked hits with snippets, --as for the inbox, filters, --json, paging with --after', async (t) => {
  const { cli } = await setup(t);
  await cli.ok('register', '--id', 'alice');
  await cli.ok('register', '--id', 'bob');
  await cli.ok('register', '--id', 'carol');
  const toBob = (await cli.json('send', '--as', 'alice', 'bob', 'the canary deploy is green', '--channel', 'ops')).message;
  const toCarol = (await cli.json('send', '--as', 'alice', 'carol', 'canary secrets for carol')).message;
  const subject = (await cli.json('send', 'bob', 'see the dashboard', '--subject', 'Canary')).message;

  const all = await cli.json('search', 'canary');
  t.equal(all.hits[0].message.id, subject.id, 'the subject match first');
  t.same(all.hits.map((h: any) => h.message.id).sort(), [subject.id, toBob.id, toCarol.id].sort(), 'every message');
  const human = (await cli.ok('search', 'canary deploy')).out.split('\n');
  t.equal(human.length, 2, 'one hit: two lines');
  t.match(human[0], new RegExp(`^#${toBob.id} alice → bob \\[ops\\] \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d$`), 'who, where, when');
  t.equal(human[1], '    the «canary» «deploy» is green', 'the snippet, indented, matches marked');
  t.same(
    (await cli.json('search', 'canary', '--as', 'bob')).hits.map((h: any) => h.message.id),
    [subject.id, toBob.id],
    "--as bob: his inbox, not carol's message",
  );
  t.same(
    (await cli.json('search', 'canary', '--channel', 'ops')).hits.map((h: any) => h.message.id),
    [toBob.id],
    '--channel',
  );
  t.same(
    (await cli.json('search', 'canary', '--from', 'ext:cli')).hits.map((h: any) => h.message.id),
    [subject.id],
    '--from',
  );
  t.same(
    (await cli.json('search', 'canary', '--to', 'carol')).hits.map((h: any) => h.message.id),
    [toCarol.id],
    '--to',
  );
  t.same(
    (await cli.json('search', 'canary', '--since', String(toBob.id))).hits.map((h: any) => h.message.id),
    [subject.id, toCarol.id],
    '--since',
  );

  const first = await cli.ok('search', 'canary', '--limit', '2');
  const hint = first.out.split('\n').at(-1)!;
  t.match(hint, /^more: add --after \S+$/, 'a cut page says how to go on');
  const rest = await cli.json('search', 'canary', '--limit', '2', '--after', hint.split(' ').at(-1)!);
  t.same(
    rest.hits.map((h: any) => h.message.id),
    [all.hits[2].message.id],
    'the next page: the third hit',
  );
  t.equal((await cli.ok('search', 'nothingmatches')).out, 'no messages found');
  const bad = await cli.run('search', '!!!');
  t.not(bad.code, 0, 'a query without words fails');
  t.match(bad.err, /query/, 'and says why');
});

t.test('threads: every message of a thread, in order, from any of its ids', async (t) => {
  const { cli } = await setup(t);
  await cli.ok('register', '--id', 'alice');
  await cli.ok('register', '--id', 'bob');
  const root = (await cli.json('send', '--as', 'alice', 'bob', 'can you look at the flaky test?', '--subject', 'flaky')).message;
  await cli.ok('send', '--as', 'alice', 'bob', 'unrelated');
  const r1 = (await cli.json('send', '--as', 'bob', '--reply-to', String(root.id), 'alice', 'on it')).message;
  const r2 = (await cli.json('send', '--as', 'alice', '--reply-to', String(r1.id), 'bob', 'thanks')).message;
  t.equal(r2.threadId, root.id, 'a reply to a reply stays in the root thread');

  for (const id of [root.id, r1.id, r2.id]) {
    const thread = await cli.json('threads', String(id));
    t.equal(thread.threadId, root.id);
    t.same(thread.messages, [root, r1, r2], `threads ${id}: the three messages in order`);
  }
  const human = await cli.ok('threads', String(r1.id));
  t.equal(
    human.out,
    [`thread #${root.id} (3 messages)`, `#${root.id} alice → bob flaky: can you look at the flaky test?`, `#${r1.id} bob → alice ↳#${root.id} on it`, `#${r2.id} alice → bob ↳#${r1.id} thanks`].join(
      '\n',
    ),
  );
  const missing = await cli.run('threads', '999');
  t.equal(missing.code, EXIT.refused);
  t.match(missing.err, /^agent-relay: .*999/);
});

t.test('claim: a task, and a claimable message; the second claimer is refused naming the owner', async (t) => {
  const { relay, cli } = await setup(t);
  for (const id of ['alice', 'bob', 'carol']) await cli.ok('register', '--id', id);
  const first = await cli.json('send', '--as', 'alice', 'broadcast', 'deploy v2', '--claimable', '--subject', 'Deploy v2');
  const second = await cli.json('send', '--as', 'alice', 'broadcast', 'write release notes', '--claimable');
  const plain = await cli.json('send', '--as', 'alice', 'bob', 'just chatting');

  const claimed = await cli.json('claim', '--as', 'bob', String(first.task.id));
  t.match(claimed.task, { id: first.task.id, status: 'claimed', claimedBy: 'bob' });
  t.type(claimed.claimToken, 'number');
  t.same(stored(cli.home, 'bob').claims, { [first.task.id]: claimed.claimToken }, 'the claim token is remembered for task update/release');
  t.match((await rpc(relay, 'task/get', { id: first.task.id })).task, { claimedBy: 'bob', status: 'claimed' });

  const refused = await cli.run('claim', '--as', 'carol', String(first.task.id));
  t.equal(refused.code, EXIT.refused);
  t.equal(refused.out, '');
  t.match(refused.err, new RegExp(`task ${first.task.id} is already claimed by bob`));
  t.equal((await rpc(relay, 'task/get', { id: first.task.id })).task.claimedBy, 'bob', 'the owner is unchanged');
  t.notOk(stored(cli.home, 'carol').claims, 'a refused claim stores nothing');

  const byMessage = await cli.ok('claim', '--as', 'carol', '--message', String(second.message.id));
  const task2 = (await rpc(relay, 'task/get', { id: second.task.id })).task;
  t.match(task2, { claimedBy: 'carol', status: 'claimed' });
  t.equal(byMessage.out, `claimed task #${task2.id} "write release notes" as carol (claim token ${task2.attempts})`);
  const late = await cli.run('claim', '--as', 'bob', '--message', String(second.message.id));
  t.equal(late.code, EXIT.refused);
  t.match(late.err, /already claimed by carol/);

  const notClaimable = await cli.run('claim', '--as', 'bob', '--message', String(plain.message.id));
  t.equal(notClaimable.code, EXIT.refused);
  t.match(notClaimable.err, /is not claimable/);
  const noTask = await cli.run('claim', '--as', 'bob', '999');
  t.equal(noTask.code, EXIT.refused);
  t.match(noTask.err, /no task 999/);
});

t.test('tasks: the table, --status, --target, --mine', async (t) => {
  const { cli } = await setup(t);
  for (const id of ['alice', 'bob', 'carol']) await cli.ok('register', '--id', id, '--tags', 'ops');
  const a = (await cli.json('send', '--as', 'alice', 'broadcast', 'task a', '--claimable')).task;
  const b = (await cli.json('send', '--as', 'alice', 'tag:ops', 'task b', '--claimable')).task;
  const c = (await cli.json('send', '--as', 'alice', 'broadcast', 'task c', '--claimable')).task;
  await cli.ok('claim', '--as', 'bob', String(a.id));
  await cli.ok('claim', '--as', 'carol', String(c.id));

  const ids = async (...args: string[]) => ((await cli.json('tasks', ...args)).tasks as any[]).map((x) => x.id).sort((x, y) => x - y);
  t.same(await ids(), [a.id, b.id, c.id]);
  t.same(await ids('--status', 'open'), [b.id]);
  t.same(await ids('--status', 'claimed'), [a.id, c.id]);
  t.same(await ids('--target', 'tag:ops'), [b.id]);
  t.same(await ids('--mine', '--as', 'bob'), [a.id]);
  t.same(await ids('--mine', '--as', 'carol'), [c.id]);
  t.same(await ids('--mine', '--as', 'alice'), []);

  const human = await cli.ok('tasks');
  const { rows } = tableCells(human.out, ['ID', 'STATUS', 'PROGRESS', 'OWNER', 'TARGET', 'SOURCE', 'SEEN', 'TITLE']);
  t.same(
    [...rows].sort((x, y) => Number(x[0]) - Number(y[0])),
    [
      [String(a.id), 'claimed', '0%', 'bob', 'broadcast', 'alice', '×1', 'task a'],
      [String(b.id), 'open', '0%', '', 'tag:ops', 'alice', '×1', 'task b'],
      [String(c.id), 'claimed', '0%', 'carol', 'broadcast', 'alice', '×1', 'task c'],
    ],
  );
  t.equal((await cli.ok('tasks', '--status', 'failed')).out, 'no tasks');
});

t.test('task show, task update (claim token remembered from claim) and task release', async (t) => {
  const { relay, dir, cli } = await setup(t);
  for (const id of ['alice', 'bob', 'carol']) await cli.ok('register', '--id', id);
  const task = (await cli.json('send', '--as', 'alice', 'broadcast', 'migrate the database\nsteps in the runbook', '--claimable', '--subject', 'Migrate DB')).task;
  await cli.ok('claim', '--as', 'bob', String(task.id));

  const progressed = await cli.json('task', 'update', '--as', 'bob', String(task.id), '--progress', '40', '--note', 'halfway');
  t.match(progressed.task, { id: task.id, progress: 40, claimedBy: 'bob' });
  const moving = await cli.ok('task', 'update', '--as', 'bob', String(task.id), '--status', 'in_progress');
  t.equal(moving.out, `task #${task.id} is in_progress 40%`);
  t.match((await rpc(relay, 'task/get', { id: task.id })).task, { status: 'in_progress', progress: 40 });

  // The same agent token without the remembered claim (another home): the relay wants the claim token.
  const otherHome = join(dir, 'other-home');
  mkdirSync(join(otherHome, 'agents'), { recursive: true });
  const { claims: _claims, ...bobWithoutClaims } = stored(cli.home, 'bob');
  writeFileSync(storedFile(otherHome, 'bob'), JSON.stringify(bobWithoutClaims));
  const noToken = await terminal(t, { ...cli.env, AGENT_RELAY_HOME: otherHome }).run('task', 'update', '--as', 'bob', String(task.id), '--progress', '90');
  t.equal(noToken.code, EXIT.refused);
  t.match(noToken.err, /claimToken: required/);
  const notOwner = await cli.run('task', 'update', '--as', 'carol', String(task.id), '--progress', '90');
  t.equal(notOwner.code, EXIT.refused);
  t.match(notOwner.err, new RegExp(`task ${task.id} is claimed by bob`));
  t.equal((await rpc(relay, 'task/get', { id: task.id })).task.progress, 40, 'neither refused update changed anything');

  const shown = await cli.json('task', 'show', String(task.id));
  t.match(shown.task, { id: task.id, title: 'Migrate DB', status: 'in_progress', progress: 40, claimedBy: 'bob' });
  t.same(
    shown.events.map((e: any) => e.kind),
    ['task.created', 'task.claimed', 'task.updated', 'task.updated'],
  );
  const human = await cli.ok('task', 'show', String(task.id));
  const lines = human.out.split('\n');
  t.equal(lines[0], `task #${task.id}: Migrate DB`);
  t.match(lines[1], /^status\s+in_progress 40%$/);
  t.match(lines[2], /^owner\s+bob$/);
  t.match(lines[3], /^target\s+broadcast$/);
  t.match(lines[4], /^source\s+alice$/);
  t.ok(human.out.includes('\nmigrate the database\nsteps in the runbook\n'), 'the body is shown');
  const events = lines.slice(lines.indexOf('events:') + 1);
  t.equal(events.length, 4, 'a line per event');
  t.match(events[0], /^ {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}task\.created /);
  t.match(events[1], /task\.claimed bob/);
  t.match(events[2], /task\.updated bob .*halfway/);
  t.match(events[3], /task\.updated bob .*in_progress/);

  const done = await cli.json('task', 'update', '--as', 'bob', String(task.id), '--status', 'done');
  t.match(done.task, { status: 'done' });
  const after = (await rpc(relay, 'task/get', { id: task.id })).task;
  t.equal(after.status, 'done');
  t.type(after.closedAt, 'number');

  // Release: bob gives a task back; carol can take it; bob's old claim token is stale.
  const other = (await cli.json('send', '--as', 'alice', 'broadcast', 'tidy the logs', '--claimable')).task;
  await cli.ok('claim', '--as', 'bob', String(other.id));
  const released = await cli.ok('task', 'release', '--as', 'bob', String(other.id), '--note', 'no time today');
  t.equal(released.out, `task #${other.id} released: open`);
  t.match((await rpc(relay, 'task/get', { id: other.id })).task, { status: 'open', claimedBy: null });
  const carolClaim = await cli.json('claim', '--as', 'carol', String(other.id));
  t.equal(carolClaim.task.claimedBy, 'carol');
  const stale = await cli.run('task', 'update', '--as', 'bob', String(other.id), '--progress', '10');
  t.equal(stale.code, EXIT.refused, "bob's remembered token went stale with the release");
  t.match(stale.err, /stale/);
  t.equal((await rpc(relay, 'task/get', { id: other.id })).task.claimedBy, 'carol');
});

t.test('event: an integration opens a task, --dedupe-key counts occurrences, --resolve closes it; a wrong secret is refused', async (t) => {
  const secret = 'alerts-secret-0123456789';
  const { relay, cli } = await setup(t, {}, [{ name: 'alerts', secret, target: 'tag:oncall', channel: 'ops' }]);
  await cli.ok('register', '--id', 'pager', '--tags', 'oncall');

  const opened = await cli.json('event', '--integration', 'alerts', '--secret', secret, '--title', 'disk full on db1', '--body', '95% used', '--dedupe-key', 'disk-db1', '--meta', '{"host":"db1"}');
  t.equal(opened.created, true);
  t.match(opened.task, {
    title: 'disk full on db1',
    body: '95% used',
    source: 'alerts',
    target: 'tag:oncall',
    channel: 'ops',
    dedupeKey: 'disk-db1',
    status: 'open',
    occurrences: 1,
    meta: { host: 'db1' },
  });
  const id = opened.task.id;
  const announced = await cli.json('inbox', '--as', 'pager');
  t.match(announced.messages, [{ from: 'ext:alerts', claimable: true, taskId: id }], 'the on-call agent is offered the task');

  const again = await cli.ok('event', '--integration', 'alerts', '--secret', secret, '--title', 'disk full on db1', '--dedupe-key', 'disk-db1');
  t.equal(again.out, `task #${id} seen again (×2): open`);
  const third = await cli.json('event', '--integration', 'alerts', '--secret', secret, '--title', 'disk full on db1', '--dedupe-key', 'disk-db1');
  t.match(third, { created: false, task: { id, occurrences: 3 } });
  t.equal((await rpc(relay, 'task/get', { id })).task.occurrences, 3);
  t.equal((await rpc(relay, 'task/list', {})).tasks.length, 1, 'one task, seen three times');

  const resolved = await cli.ok('event', '--integration', 'alerts', '--secret', secret, '--title', 'disk ok', '--dedupe-key', 'disk-db1', '--resolve');
  t.equal(resolved.out, `task #${id} resolved: done`);
  t.equal((await rpc(relay, 'task/get', { id })).task.status, 'done');

  const wrong = await cli.run('event', '--integration', 'alerts', '--secret', 'not-the-secret-at-all', '--title', 'forged');
  t.equal(wrong.code, EXIT.refused);
  t.match(wrong.err, /unauthorized: bearer secret does not match/);
  t.match(wrong.err, /--secret or AGENT_RELAY_INTEGRATION_SECRET/, 'the hint names the integration secret');
  t.notMatch(wrong.err, /AGENT_RELAY_TOKEN/, 'not the relay token, which the ingress does not use');
  t.equal((await rpc(relay, 'task/list', {})).tasks.length, 1, 'the forged event created nothing');

  const unknown = await cli.run('event', '--integration', 'nope', '--secret', secret, '--title', 'x');
  t.equal(unknown.code, EXIT.refused);
  t.match(unknown.err, /no integration named nope/);
  const nothingToResolve = await cli.run('event', '--integration', 'alerts', '--secret', secret, '--title', 'x', '--dedupe-key', 'never-opened', '--resolve');
  t.equal(nothingToResolve.code, EXIT.refused);
  t.match(nothingToResolve.err, /no open task "never-opened"/);

  const envSecret = terminal(t, { ...cli.env, AGENT_RELAY_INTEGRATION_SECRET: secret });
  const byEnv = await envSecret.ok('event', '--integration', 'alerts', '--title', 'cpu hot', '--target', 'pager');
  t.match(byEnv.out, /^task #\d+ opened: open$/);
  const newest = (await rpc(relay, 'task/list', {})).tasks.find((x: any) => x.title === 'cpu hot');
  t.match(newest, { target: 'pager', source: 'alerts' }, 'AGENT_RELAY_INTEGRATION_SECRET is the default --secret; --target overrides the integration’s');

  for (const argv of [
    ['event', '--integration', 'alerts', '--title', 'no secret'],
    ['event', '--integration', 'alerts', '--secret', secret, '--title', 'x', '--resolve'],
    ['event', '--integration', 'alerts', '--secret', secret, '--title', 'x', '--meta', '[1,2]'],
    ['event', '--integration', 'alerts', '--secret', secret],
  ]) {
    const r = await cli.run(...argv);
    t.equal(r.code, EXIT.usage, `${argv.join(' ')}: usage error`);
  }
  t.equal((await rpc(relay, 'task/list', {})).tasks.length, 2);
});

t.test('status: --json counts match the relay, and the human summary', async (t) => {
  const { relay, cli } = await setup(t);
  for (const id of ['alice', 'bob', 'dave']) await cli.ok('register', '--id', id);
  await rpc(relay, 'agent/update', { status: 'offline', ...as(cli.home, 'dave') });
  await connectAgent(t, relay.wsUrl, { id: 'ws-agent' });
  const a = (await cli.json('send', '--as', 'alice', 'broadcast', 'one', '--claimable')).task;
  await cli.ok('send', '--as', 'alice', 'broadcast', 'two', '--claimable');
  const last = (await cli.json('send', '--as', 'alice', 'bob', 'hi')).message;
  await cli.ok('claim', '--as', 'bob', String(a.id));

  const s = await cli.json('status');
  t.match(s, {
    url: relay.url,
    ok: true,
    dbWritable: true,
    agents: 4,
    connections: 1,
    cursor: last.id,
    agentsByStatus: { online: 3, offline: 1 },
    tasksByStatus: { claimed: 1, open: 1 },
  });
  t.same(Object.keys(s.agentsByStatus).sort(), ['offline', 'online']);
  t.same(Object.keys(s.tasksByStatus).sort(), ['claimed', 'open']);

  const human = (await cli.ok('status')).out.split('\n');
  t.equal(human[0], `relay ${relay.url}: ok, database writable`);
  t.ok(human.some((l) => /^connections\s+1$/.test(l)));
  t.ok(human.some((l) => new RegExp(`^last message id\\s+${last.id}$`).test(l)));
  t.ok(human.some((l) => /^agents online\s+3$/.test(l)));
  t.ok(human.some((l) => /^agents offline\s+1$/.test(l)));
  t.ok(human.some((l) => /^tasks claimed\s+1$/.test(l)));
  t.ok(human.some((l) => /^tasks open\s+1$/.test(l)));
});

t.test('usage errors exit 2 without reaching for the relay', async (t) => {
  // Nothing listens at this URL: a command that went to the relay would exit 3, not 2.
  const dir = t.testdir();
  const cli = terminal(t, { AGENT_RELAY_URL: `http://127.0.0.1:${await closedPort()}`, AGENT_RELAY_HOME: join(dir, 'home') });
  const cases: Array<[string[], RegExp]> = [
    [['bogus'], /unknown command 'bogus'[\s\S]*agent-relay --help/],
    [['agents', '--bogus'], /unknown option '--bogus'/],
    [['threads', 'abc'], /expected a whole number, got "abc"/],
    [['claim', '--as', 'bob', '1.5'], /expected a whole number, got "1.5"/],
    [['task', 'show', 'seven'], /expected a whole number/],
    [['send', '--reply-to', 'x', 'bob', 'hi'], /expected a whole number, got "x"/],
    [['inbox', '--limit', 'ten'], /expected a whole number/],
    [['send', 'bob'], /missing required argument 'body'/],
    [['inbox'], /pass --as ID \(or set AGENT_RELAY_AGENT\)/],
    [['claim', '3'], /pass --as ID/],
    [['tasks', '--mine'], /pass --as ID/],
    [['inbox', '--as', 'ghost'], /no stored token for agent ghost in .*: run `agent-relay register --id ghost` first/],
    [['task', 'update', '1'], /task update needs --status, --progress or --note/],
    [['task', 'update', '1', '--progress', '101'], /expected 0–100, got "101"/],
    [['event', '--title', 'x'], /required option '--integration <name>' not specified/],
  ];
  for (const [argv, message] of cases) {
    const r = await cli.run(...argv);
    t.equal(r.code, EXIT.usage, `${argv.join(' ')} exits 2`, { stderr: r.err });
    t.match(r.err, message, `${argv.join(' ')} says what is wrong`);
    t.equal(r.out, '', `${argv.join(' ')} prints nothing on stdout`);
  }
  const help = await cli.run('--help');
  t.equal(help.code, EXIT.ok, '--help is not an error');
  t.match(help.out, /Usage: agent-relay/);
});

t.test('relay unreachable: exit 3 with how to start it', async (t) => {
  const port = await closedPort();
  const dir = t.testdir();
  const url = `http://127.0.0.1:${port}`;
  const cli = terminal(t, { AGENT_RELAY_URL: url, AGENT_RELAY_HOME: join(dir, 'home') });
  for (const argv of [['agents'], ['status'], ['register', '--id', 'alice'], ['send', 'bob', 'hi'], ['tasks', '--json'], ['event', '--integration', 'x', '--secret', 'y', '--title', 'z']]) {
    const r = await cli.run(...argv);
    t.equal(r.code, EXIT.unreachable, `${argv.join(' ')} exits 3`, { stderr: r.err });
    const message = `relay not reachable at ${url} (ECONNREFUSED): is it running? start it with agent-relay serve`;
    if (argv.includes('--json')) t.same(JSON.parse(r.err), { error: { code: 'unreachable', message, exit: 3 } }, 'with --json, as JSON');
    else t.equal(r.err, `agent-relay: ${message}`);
    t.equal(r.out, '');
  }
  t.notOk(existsSync(storedFile(cli.home, 'alice')), 'a failed register stores nothing');

  // --url beats AGENT_RELAY_URL.
  const relay = await startRelay(t, {}, { dir });
  const r = await cli.json('--url', relay.url, 'status');
  t.equal(r.url, relay.url);
});

t.test('relay token: refused without it, accepted from AGENT_RELAY_TOKEN or --token', async (t) => {
  const token = 'relay-token-0123456789abcdef';
  const secret = 'hook-secret-0123456789';
  const { relay, cli } = await setup(t, { token }, [{ name: 'ci', secret, target: 'broadcast' }]);

  for (const argv of [['agents'], ['status'], ['register', '--id', 'alice'], ['tasks']]) {
    const r = await cli.run(...argv);
    t.equal(r.code, EXIT.refused, `${argv.join(' ')} without the token exits 1`, { stderr: r.err });
    t.equal(r.err, `agent-relay: the relay at ${relay.url} needs a relay token and none was given: pass --token TOKEN or set AGENT_RELAY_TOKEN to the value the relay was started with`);
  }
  t.notOk(existsSync(storedFile(cli.home, 'alice')));
  const wrong = await cli.run('--token', 'not-the-relay-token-at-all', 'agents');
  t.equal(wrong.code, EXIT.refused);
  t.equal(wrong.err, `agent-relay: the relay at ${relay.url} refused the relay token given (--token or AGENT_RELAY_TOKEN): pass the AGENT_RELAY_TOKEN the relay was started with`);

  const authed = terminal(t, { ...cli.env, AGENT_RELAY_TOKEN: token });
  t.equal((await authed.json('register', '--id', 'alice')).agent.id, 'alice');
  await authed.ok('register', '--id', 'bob');
  const sent = await authed.json('send', '--as', 'alice', 'bob', 'behind a token');
  t.same((await authed.json('inbox', '--as', 'bob')).messages, [sent.message]);
  t.match(await authed.json('status'), { ok: true, agents: 2 });
  t.same(((await rpc(relay, 'agent/list', {}, token)).agents as any[]).map((a) => a.id).sort(), ['alice', 'bob']);

  const flagged = await cli.json('--token', token, 'agents');
  t.equal(flagged.agents.length, 2, '--token works without the environment variable');

  // The ingress authenticates with the integration's secret, relay token or not.
  const opened = await authed.json('event', '--integration', 'ci', '--secret', secret, '--title', 'build red');
  t.equal(opened.created, true);
  t.equal((await cli.json('--token', token, 'tasks')).tasks.length, 1);
});

t.test('colour: ANSI escapes only on a terminal without NO_COLOR', async (t) => {
  const { relay, dir, cli } = await setup(t);
  await cli.ok('register', '--id', 'alice');
  await cli.ok('register', '--id', 'dave');
  await cli.ok('register', '--id', 'bob');
  await rpc(relay, 'agent/update', { status: 'offline', ...as(cli.home, 'dave') });
  const task = (await cli.json('send', '--as', 'alice', 'broadcast', 'colourful work', '--claimable', '--subject', 'Paint', '--channel', 'art')).task;
  await cli.ok('claim', '--as', 'bob', String(task.id));

  const session = async (term: Terminal): Promise<string> => {
    const runs = [
      await term.run('send', '--as', 'alice', 'dave', 'offline warning please'),
      await term.run('inbox', '--as', 'bob'),
      await term.run('agents'),
      await term.run('tasks'),
      await term.run('task', 'show', String(task.id)),
      await term.run('threads', String(task.messageId)),
      await term.run('status'),
      await term.run('claim', '--as', 'alice', String(task.id)),
    ];
    return runs.map((r) => `${r.out}\n${r.err}`).join('\n');
  };
  const env = { ...cli.env, AGENT_RELAY_HOME: join(dir, 'home') };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ESC [ (a colour code) is what is looked for
  const csi = /\x1b\[/;
  t.notMatch(await session(terminal(t, env, { isTTY: false })), csi, 'piped output has no escape codes');
  t.match(await session(terminal(t, env, { isTTY: true })), csi, 'a terminal gets colour (the check above can fail)');
  t.notMatch(await session(terminal(t, { ...env, NO_COLOR: '1' }, { isTTY: true })), csi, 'NO_COLOR turns it off');
});

t.test('two terminals: a threaded conversation and a shared claimable task', async (t) => {
  const { relay, dir } = await setup(t);
  // Two shells, each with its own home and AGENT_RELAY_AGENT, as two people (or two agents) would have.
  const a = terminal(t, { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: join(dir, 'alice-home'), AGENT_RELAY_AGENT: 'alice' });
  const b = terminal(t, { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: join(dir, 'bob-home'), AGENT_RELAY_AGENT: 'bob' });
  await a.ok('register', '--id', 'alice');
  await b.ok('register', '--id', 'bob');
  t.notOk(existsSync(storedFile(a.home, 'bob')), "each terminal holds only its own agent's token");

  const m1 = (await a.json('send', 'bob', 'can you review PR 12?', '--subject', 'review')).message;
  t.equal(m1.from, 'alice', 'AGENT_RELAY_AGENT picks the sender');
  const bobSees = await b.json('inbox', '--unread', '--mark-read');
  t.same(bobSees.messages, [m1]);
  const m2 = (await b.json('send', 'alice', 'sure, after lunch', '--reply-to', String(m1.id))).message;
  t.match(m2, { from: 'bob', to: 'alice', replyTo: m1.id, threadId: m1.id });
  t.same((await a.json('inbox', '--unread')).messages, [m2]);
  const m3 = (await a.json('send', 'bob', 'thanks!', '--reply-to', String(m2.id))).message;
  t.same((await b.json('inbox', '--unread', '--mark-read')).messages, [m3], 'bob reads the answer');

  const thread = await b.json('threads', String(m3.id));
  t.same(
    thread.messages.map((m: any) => [m.id, m.from, m.body]),
    [
      [m1.id, 'alice', 'can you review PR 12?'],
      [m2.id, 'bob', 'sure, after lunch'],
      [m3.id, 'alice', 'thanks!'],
    ],
  );
  const humanThread = (await a.ok('threads', String(m1.id))).out.split('\n');
  t.same(
    humanThread.slice(1).map((l) => l.split(' ')[0]),
    [`#${m1.id}`, `#${m2.id}`, `#${m3.id}`],
    'the same order in the human view',
  );

  // Shared work: alice offers it; bob takes it; alice is refused; bob finishes it.
  const offer = await a.json('send', 'broadcast', 'ship release 1.4', '--claimable', '--subject', 'Ship 1.4');
  const offered = await b.json('inbox', '--unread');
  t.match(offered.messages, [{ id: offer.message.id, claimable: true, taskId: offer.task.id }]);
  const claimed = await b.json('claim', '--message', String(offer.message.id));
  t.equal(claimed.task.claimedBy, 'bob');
  const refused = await a.run('claim', String(offer.task.id));
  t.equal(refused.code, EXIT.refused);
  t.match(refused.err, new RegExp(`task ${offer.task.id} is already claimed by bob`));
  await b.ok('task', 'update', String(offer.task.id), '--progress', '50', '--note', 'tagged');
  const finished = await b.ok('task', 'update', String(offer.task.id), '--status', 'done');
  t.equal(finished.out, `task #${offer.task.id} is done 100%`);
  const seen = await a.json('tasks', '--status', 'done');
  t.match(seen.tasks, [{ id: offer.task.id, claimedBy: 'bob', status: 'done' }]);
  const detail = await a.json('task', 'show', String(offer.task.id));
  t.same(
    detail.events.map((e: any) => [e.kind, e.agentId]),
    [
      ['task.created', null],
      ['task.claimed', 'bob'],
      ['task.updated', 'bob'],
      ['task.closed', 'bob'],
    ],
  );
  t.same(
    (await b.json('tasks', '--mine')).tasks.map((x: any) => x.id),
    [offer.task.id],
  );
  t.same((await a.json('tasks', '--mine')).tasks, []);
});

t.test('the identity file is replaced whole: a command reading it while another writes never finds it truncated', async (t) => {
  // A monitor rewrites the file on every message while other commands read it (`--as`). A worker
  // thread rewrites it as fast as it can; this thread reads it meanwhile.
  const home = join(t.testdir(), 'home');
  saveIdentity(home, { id: 'bob', token: 'tok', url: 'http://127.0.0.1:1', cursor: 0 });
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     // The worker does not inherit the test's TypeScript loader: register tsx's, as bin/agent-relay.js does.
     import('tsx/esm/api').then(({ register }) => (register(), import(workerData.store))).then(({ saveIdentity }) => {
       parentPort.postMessage('started');
       for (let i = 1; i <= 4000; i++) saveIdentity(workerData.home, { id: 'bob', token: 'tok', url: 'http://127.0.0.1:1', claims: { 7: 1 }, cursor: i });
     });`,
    { eval: true, workerData: { home, store: new URL('../../clients/cli/identity-store.ts', import.meta.url).href } },
  );
  let done = false;
  const exited = new Promise<number>((resolve) => worker.once('exit', (code) => ((done = true), resolve(code))));
  await new Promise((resolve) => worker.once('message', resolve));
  let reads = 0;
  let torn = 0;
  const seen = new Set<number>();
  while (!done) {
    const id = loadIdentity(home, 'bob', 'http://127.0.0.1:1');
    reads++;
    if (id === null || id.token !== 'tok') torn++;
    else seen.add(id.cursor ?? -1);
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.equal(await exited, 0, 'the writer finished');
  t.ok(seen.size > 1, `reads overlapped the writes (${seen.size} distinct versions over ${reads} reads)`);
  t.equal(torn, 0, 'every read found a whole identity');
  t.equal(loadIdentity(home, 'bob', 'http://127.0.0.1:1')?.cursor, 4000);
  t.same(readdirSync(join(home, 'agents')), ['bob.json'], 'no temporary files left behind');
});

t.test('--url: the ws://host:port/rpc address the relay prints is the same relay; garbage is a usage error naming where it came from', async (t) => {
  const { relay, cli } = await setup(t);
  const ws = `ws://127.0.0.1:${relay.port}/rpc`;
  t.equal((await cli.json('--url', ws, 'status')).url, relay.url, '--url ws://.../rpc reaches the relay at its http address');
  await cli.ok('--url', ws, 'register', '--id', 'alice');
  await cli.ok('--url', `${relay.url}/`, 'register', '--id', 'bob');
  t.same(Object.keys(JSON.parse(readFileSync(storedFile(cli.home, 'alice'), 'utf8')).relays), [relay.url], 'the token is stored under the http address');
  const sent = await cli.json('--url', ws, 'send', '--as', 'alice', 'bob', 'over either address');
  t.same((await cli.json('inbox', '--as', 'bob')).messages, [sent.message], 'and found again through AGENT_RELAY_URL=http://...');
  const fromEnv = terminal(t, { ...cli.env, AGENT_RELAY_URL: ws });
  t.equal((await fromEnv.json('inbox', '--as', 'bob')).messages.length, 1, 'AGENT_RELAY_URL=ws://.../rpc too');

  const wrong: Array<[Terminal, string[], string]> = [
    [cli, ['--url', 'garbage', 'agents'], `--url: expected the relay's address, such as http://127.0.0.1:4850, got "garbage"`],
    [cli, ['--url', 'ftp://127.0.0.1:4850', 'status'], `--url: expected the relay's address, such as http://127.0.0.1:4850 (http, https, ws or wss), got "ftp://127.0.0.1:4850"`],
    [cli, ['--url', '127.0.0.1:4850', 'tail'], `--url: expected the relay's address, such as http://127.0.0.1:4850, got "127.0.0.1:4850"`],
    [cli, ['--url', 'localhost:4850', 'agents'], `--url: expected the relay's address, such as http://127.0.0.1:4850 (http, https, ws or wss), got "localhost:4850"`],
    [terminal(t, { ...cli.env, AGENT_RELAY_URL: 'not a url' }), ['inbox', '--as', 'bob'], `AGENT_RELAY_URL: expected the relay's address, such as http://127.0.0.1:4850, got "not a url"`],
  ];
  for (const [term, argv, message] of wrong) {
    const r = await term.run(...argv);
    t.equal(r.code, EXIT.usage, `${argv.join(' ')}: exit 2, not 3`);
    t.equal(r.err, `agent-relay: ${message}`);
  }
});

t.test('agent tokens are kept per relay: the same id on a second relay does not lock it out of the first', async (t) => {
  const dir = t.testdir();
  const one = await startRelay(t, {}, { dir: join(dir, 'one') });
  const two = await startRelay(t, {}, { dir: join(dir, 'two') });
  const home = join(dir, 'home');
  const on = (relay: TestRelay) => terminal(t, { AGENT_RELAY_URL: relay.url, AGENT_RELAY_HOME: home });
  const first = await on(one).json('register', '--id', 'bob');
  const second = await on(two).json('register', '--id', 'bob');
  t.not(first.agentToken, second.agentToken, 'each relay issued its own token');
  t.same(stored(home, 'bob', one.url).token, first.agentToken);
  t.same(stored(home, 'bob', two.url).token, second.agentToken);
  t.equal((await on(one).json('send', '--as', 'bob', 'bob', 'still me on one')).message.from, 'bob', 'bob still acts on the first relay');
  t.equal((await on(two).json('send', '--as', 'bob', 'bob', 'and on two')).message.from, 'bob');
  t.equal((await on(one).json('register', '--id', 'bob')).agentToken, first.agentToken, 're-register on the first relay presents its own token');

  // A relay bob never registered on: the usage error says where bob does have a token.
  const three = await startRelay(t, {}, { dir: join(dir, 'three') });
  const none = await on(three).run('inbox', '--as', 'bob');
  t.equal(none.code, EXIT.usage);
  t.equal(
    none.err,
    `agent-relay: no stored token for agent bob in ${home} for ${three.url} (it has one for ${one.url}, ${two.url}: pass --url to use that relay): run \`agent-relay register --id bob\` first`,
  );
});

t.test('an identity file of the single-token format is read as its relay entry and kept when another relay is added', async (t) => {
  const { relay, dir, cli } = await setup(t);
  const reg = await cli.json('register', '--id', 'carol');
  // What earlier versions wrote: one token, one url, claims and cursor beside them.
  writeFileSync(storedFile(cli.home, 'carol'), JSON.stringify({ id: 'carol', token: reg.agentToken, url: `${relay.url}/`, cursor: 0, claims: { 9: 3 } }));
  const msg = await cli.json('send', '--as', 'carol', 'carol', 'old file, still carol');
  t.equal(msg.message.from, 'carol', 'the old file still authenticates');
  const other = await startRelay(t, {}, { dir: join(dir, 'other') });
  await terminal(t, { ...cli.env, AGENT_RELAY_URL: other.url }).ok('register', '--id', 'carol');
  const file = JSON.parse(readFileSync(storedFile(cli.home, 'carol'), 'utf8'));
  t.same(file.relays[relay.url], { token: reg.agentToken, cursor: 0, claims: { 9: 3 } }, 'rewritten in the per-relay format, the old entry whole');
  t.type(file.relays[other.url]?.token, 'string');
  t.equal(file.token, undefined, 'no single-token fields left');
});

t.test('401s name the right token: the relay token, or the stored agent token and the relay it is for', async (t) => {
  const token = 'relay-token-0123456789abcdef';
  const { relay, cli } = await setup(t, { token });
  const authed = terminal(t, { ...cli.env, AGENT_RELAY_TOKEN: token });
  await authed.ok('register', '--id', 'bob');

  // tail holds a WebSocket: its refused upgrade is a relay-token problem too, not "not reachable".
  const tail = await cli.run('tail');
  t.equal(tail.code, EXIT.refused, 'tail without the relay token exits 1, not 3');
  t.match(tail.err, `the relay at ${relay.url} needs a relay token and none was given`);

  // The relay token is right but the stored agent token is not (the relay's database was replaced, say).
  const file = storedFile(cli.home, 'bob');
  const real = stored(cli.home, 'bob').token;
  saveIdentity(cli.home, { id: 'bob', url: relay.url, token: 'not-bobs-token-0123456789' });
  const expected = `agent-relay: agent token for "bob" stored for ${relay.url} was refused (unauthorized: agentToken does not match agent bob); re-register with agent-relay register --id bob (if the relay knows another "bob", pick another --id; the stored token is in ${file})`;
  for (const argv of [
    ['inbox', '--as', 'bob'],
    ['send', '--as', 'bob', 'broadcast', 'hi'],
    ['claim', '--as', 'bob', '1'],
  ]) {
    const r = await authed.run(...argv);
    t.equal(r.code, EXIT.refused, `${argv[0]} with a wrong stored agent token exits 1`);
    t.equal(r.err, expected, `${argv[0]}: names the agent token, its relay and how to reset it`);
  }
  const monitor = await authed.run('monitor', '--as', 'bob');
  t.equal(monitor.code, EXIT.refused, 'monitor with the wrong stored agent token ends, exit 1');
  t.equal(
    monitor.err,
    expected.replace('(unauthorized: agentToken does not match agent bob)', '(unauthorized: agent bob exists; re-registering it needs its agentToken)'),
    'monitor: the same explanation',
  );
  const noRelayToken = await cli.run('monitor', '--as', 'bob');
  t.equal(noRelayToken.code, EXIT.refused, 'monitor without the relay token ends instead of waiting forever');
  t.match(noRelayToken.err, 'needs a relay token and none was given');
  const again = await authed.run('register', '--id', 'bob');
  t.equal(again.code, EXIT.refused);
  t.equal(
    again.err,
    `agent-relay: agent "bob" is already registered on ${relay.url} with another token than the one stored in ${file} (registered from another terminal or machine?): pick another --id, or run from the AGENT_RELAY_HOME that registered it`,
  );
  saveIdentity(cli.home, { id: 'bob', url: relay.url, token: real });
  t.equal((await authed.json('inbox', '--as', 'bob')).messages.length, 0, 'with the real token back, the same call works (the refusals above were about the token)');
});

t.test('--json: errors are one JSON document on stderr, {"error":{code,message,exit}}, stdout empty', async (t) => {
  const token = 'relay-token-0123456789abcdef';
  const { cli } = await setup(t, { token });
  const cases: Array<[string[], { code: string; exit: number; message: RegExp }]> = [
    [['--json', 'agents', '--bogus'], { code: 'usage', exit: 2, message: /^unknown option '--bogus'$/ }],
    [['agents', '--json', '--status'], { code: 'usage', exit: 2, message: /option '--status <status>' argument missing/ }],
    [['--json', 'inbox'], { code: 'usage', exit: 2, message: /pass --as ID/ }],
    [['--json', '--url', 'garbage', 'agents'], { code: 'usage', exit: 2, message: /^--url: expected the relay's address/ }],
    [['--json', 'agents'], { code: 'relayToken', exit: 1, message: /needs a relay token and none was given/ }],
    [['--json', '--token', token, 'task', 'show', '99'], { code: 'notFound', exit: 1, message: /99/ }],
    [['--json', '--url', `http://127.0.0.1:${await closedPort()}`, 'status'], { code: 'unreachable', exit: 3, message: /relay not reachable/ }],
  ];
  for (const [argv, want] of cases) {
    const r = await cli.run(...argv);
    t.equal(r.code, want.exit, `${argv.join(' ')}: exit ${want.exit}`);
    t.equal(r.out, '', `${argv.join(' ')}: nothing on stdout`);
    let doc: any = null;
    try {
      doc = JSON.parse(r.err);
    } catch {
      t.fail(`${argv.join(' ')}: stderr is one JSON document`, { stderr: r.err });
      continue;
    }
    t.same(Object.keys(doc), ['error']);
    t.match(doc.error, { code: want.code, exit: want.exit, message: want.message }, `${argv.join(' ')}: ${want.code}`);
  }
  t.notMatch((await cli.run('agents', '--bogus')).err, /^\{/, 'without --json the same error is text');
});

t.test('a refused command line shows the usage of the command that refused it', async (t) => {
  const dir = t.testdir();
  const cli = terminal(t, { AGENT_RELAY_URL: `http://127.0.0.1:${await closedPort()}`, AGENT_RELAY_HOME: join(dir, 'home') });
  const cases: Array<[string[], string]> = [
    [['agents', '--bogus'], 'usage: agent-relay agents [options]\n(run agent-relay agents --help for details)'],
    [['send', '--channel'], 'usage: agent-relay send [options] <to> <body>\n(run agent-relay send --help for details)'],
    [['task', 'update', '1', '--progress'], 'usage: agent-relay task update [options] <id>\n(run agent-relay task update --help for details)'],
    [['tail', '--since', 'abc'], 'usage: agent-relay tail [options]'],
    [['--url'], 'usage: agent-relay [options] [command]'],
  ];
  for (const [argv, usage] of cases) {
    const r = await cli.run(...argv);
    t.equal(r.code, EXIT.usage, `${argv.join(' ')}: exit 2`);
    t.match(r.err, /^error: /, `${argv.join(' ')}: says what is wrong first`);
    t.match(r.err, usage, `${argv.join(' ')}: then its usage`);
    t.notMatch(r.err, /TypeError|\n\s+at /, 'no TypeError, no stack');
  }
});

t.test('lease acquire, list, renew, release: tokens remembered; a conflict names the holder; bad input is a usage error', async (t) => {
  const { relay, cli } = await setup(t);
  for (const id of ['alice', 'bob']) await cli.ok('register', '--id', id);
  const got = await cli.json('lease', 'acquire', '--as', 'alice', 'src/auth/**', 'db:migrations', '--ttl', '10m', '--reason', 'login rewrite');
  t.match(got.lease, { agentId: 'alice', mode: 'exclusive', resources: ['src/auth/**', 'db:migrations'], reason: 'login rewrite', ttlMs: 600_000 });
  t.same(stored(cli.home, 'alice').leases, { [got.lease.id]: got.token }, 'the token is remembered for renew and release');

  const refused = await cli.run('lease', 'acquire', '--as', 'bob', 'src/auth/login.ts');
  t.equal(refused.code, EXIT.refused);
  t.match(refused.err, /held exclusive by alice \("login rewrite"\)/);
  const shared = await cli.ok('lease', 'acquire', '--as', 'bob', '--shared', 'docs/**', '--ttl', '90s');
  t.match(shared.out, /^lease #\d+ \(shared\) on docs\/\*\* until .*, token \d+$/);

  const listed = await cli.ok('lease', 'list');
  t.match(listed.out, /^ID\s+HOLDER\s+MODE\s+EXPIRES IN\s+TOKEN\s+RESOURCES\s+REASON/);
  t.match(listed.out, /alice\s+exclusive\s+(600|599)s\s+\d+\s+src\/auth\/\*\* db:migrations\s+login rewrite/);
  t.same(
    (await cli.json('lease', 'list', '--resource', 'docs/x.md')).leases.map((l: { agentId: string }) => l.agentId),
    ['bob'],
  );
  t.same(
    (await cli.json('lease', 'list', '--as', 'alice', '--mine')).leases.map((l: { id: number }) => l.id),
    [got.lease.id],
  );

  const renewed = await cli.json('lease', 'renew', '--as', 'alice', String(got.lease.id), '--ttl', '1h');
  t.ok(renewed.token > got.token, 'renew answers a new token');
  t.equal(stored(cli.home, 'alice').leases?.[got.lease.id], renewed.token, 'and the stored one follows');
  const stale = await cli.run('lease', 'renew', '--as', 'alice', String(got.lease.id), '--lease-token', String(got.token));
  t.equal(stale.code, EXIT.refused, 'an explicit stale token is refused');
  t.match(stale.err, /is stale/);
  const noToken = await cli.run('lease', 'release', '--as', 'bob', String(got.lease.id));
  t.equal(noToken.code, EXIT.usage, 'no stored token and no --lease-token: a usage error');
  t.match(noToken.err, /pass --lease-token/);
  t.equal((await cli.run('lease', 'acquire', '--as', 'bob', 'x', '--ttl', '5 minutes')).code, EXIT.usage, 'a malformed --ttl');

  await cli.ok('lease', 'release', '--as', 'alice', String(got.lease.id));
  t.same((await rpc(relay, 'lease/list', { holder: 'alice' })).leases, [], 'released on the relay');
});
