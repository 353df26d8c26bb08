import t, { type Test } from 'tap';
import net from 'node:net';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { LoggingMessageNotificationSchema, ResourceUpdatedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { derivedAgentId } from '../../protocol/agent-id.js';
import { ERRORS } from '../../protocol/errors.js';
import { childEnv, ROOT, trackChild, untrackChild } from '../helpers/child.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';
import { connectAgent } from '../helpers/ws-client.js';
import { testedBlock } from '../helpers/readme.js';

/**
 * `agent-relay mcp` as MCP clients run it: the real bin as a child process over stdio, driven by
 * the SDK's own client, against a real relay (in-process, on a loopback port). Every tool, the
 * contract's errors, the notifications of a new message, leaving on close, and start-up with the
 * relay down.
 */

const BIN = join(ROOT, 'bin', 'agent-relay.js');
const TOOL_NAMES = [
  'claim',
  'get_thread',
  'inbox',
  'lease_acquire',
  'lease_list',
  'lease_release',
  'lease_renew',
  'list_agents',
  'mark_read',
  'read_message',
  'release_task',
  'search_messages',
  'send_message',
  'update_task',
  'whoami',
];

interface Mcp {
  client: Client;
  transport: StdioClientTransport;
  stderr: () => string;
  /** Call a tool; the result as the SDK returns it. */
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  /** Call a tool that must succeed: its structured content. */
  ok(name: string, args?: Record<string, unknown>): Promise<any>;
  /** Call a tool that must be refused: the error it carries. */
  refused(name: string, args?: Record<string, unknown>): Promise<{ code: number | null; message: string; data?: Record<string, unknown> }>;
}

async function startMcp(t: Test, url: string, home: string, extraArgs: string[] = []): Promise<Mcp> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp', '--client', 'test', ...extraArgs],
    cwd: ROOT,
    env: childEnv({ AGENT_RELAY_URL: url, AGENT_RELAY_HOME: home }, (k) => k.startsWith('AGENT_RELAY_')) as Record<string, string>,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const client = new Client({ name: 'agent-relay-test', version: '1.0.0' });
  t.teardown(async () => {
    await client.close().catch(() => undefined);
  });
  await client.connect(transport);
  const pid = transport.pid;
  if (pid !== null) {
    trackChild(pid);
    t.teardown(() => untrackChild(pid));
  }
  const call = (name: string, args: Record<string, unknown> = {}) => client.callTool({ name, arguments: args }) as Promise<CallToolResult>;
  return {
    client,
    transport,
    stderr: () => stderr,
    call,
    ok: async (name, args) => {
      const r = await call(name, args);
      if (r.isError) throw new Error(`${name} refused: ${JSON.stringify(r.content)}`);
      return r.structuredContent;
    },
    refused: async (name, args) => {
      const r = await call(name, args);
      if (!r.isError) throw new Error(`${name} was not refused: ${JSON.stringify(r.content)}`);
      return (r.structuredContent as { error: { code: number | null; message: string } }).error;
    },
  };
}

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

async function setup(t: Test): Promise<{ relay: TestRelay; mcp: Mcp; me: string; home: string }> {
  // One testdir: a second t.testdir() call empties the folder, the relay's database with it.
  const dir = t.testdir();
  const relay = await startRelay(t, {}, { dir });
  const home = join(dir, 'home');
  const mcp = await startMcp(t, relay.url, home);
  return { relay, mcp, me: derivedAgentId([hostname(), 'test', basename(ROOT)]), home };
}

t.test('the tools are the documented few, each with a description and an input schema', async (t) => {
  const { mcp } = await setup(t);
  const { tools } = await mcp.client.listTools();
  t.same(tools.map((x) => x.name).sort(), TOOL_NAMES);
  for (const tool of tools) {
    t.ok(tool.description && tool.description.length > 40, `${tool.name} says what it does`);
    t.equal(tool.inputSchema.type, 'object', `${tool.name} has an object input schema`);
  }
  const send = tools.find((x) => x.name === 'send_message')!;
  t.same(send.inputSchema.required?.sort(), ['body', 'to'], 'send_message needs to and body (from the protocol schema)');
  const caps = mcp.client.getServerCapabilities();
  t.ok(caps?.logging, 'announces logging');
  t.equal(caps?.resources?.subscribe, true, 'announces resource subscriptions');
});

t.test('whoami, list_agents and send_message act as the registered agent', async (t) => {
  const { relay, mcp, me } = await setup(t);
  const who = await mcp.ok('whoami');
  t.equal(who.agent.id, me, 'the default id is HOST-CLIENT-FOLDER');
  t.equal(who.url, relay.url);
  t.ok(who.agent.tags.includes('mcp') && who.agent.tags.includes('test'), 'tagged with mcp and the client');

  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob', tags: ['reviewer'] });
  const listed = await mcp.ok('list_agents');
  t.same(listed.agents.map((a: { id: string }) => a.id).sort(), ['bob', me].sort(), 'online agents');
  const reviewers = await mcp.call('list_agents', { tag: 'reviewer' });
  t.match(text(reviewers), /^bob "/, 'text lists one line per agent');

  const sent = await mcp.ok('send_message', { to: 'tag:reviewer', body: 'please review PR 7', subject: 'review' });
  t.same(sent.recipients, ['bob']);
  await waitFor(() => bob.rpc.notifications.some((n) => n.method === 'message/new' && (n.params as any).message.id === sent.message.id), 'bob gets the message');
  t.equal((bob.rpc.notifications.find((n) => n.method === 'message/new')!.params as any).message.from, me, 'sent as this agent');
});

t.test('a message to the agent is announced, listed, read, marked and threaded', async (t) => {
  const { relay, mcp, me } = await setup(t);
  const logs: any[] = [];
  const updates: string[] = [];
  mcp.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(n.params));
  mcp.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updates.push(n.params.uri));
  await mcp.client.subscribeResource({ uri: 'relay://inbox' });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });

  const first = await bob.rpc.call('message/send', { to: me, body: 'hello from bob', subject: 'hi' });
  await waitFor(() => logs.some((l) => l.data?.message?.id === first.message.id), 'a log notification for the message');
  const log = logs.find((l) => l.data?.message?.id === first.message.id);
  t.equal(log.level, 'info');
  t.equal(log.logger, 'agent-relay');
  t.match(log.data.text, /from bob/);
  await waitFor(() => updates.includes('relay://inbox'), 'relay://inbox updated');
  const resource = await mcp.client.readResource({ uri: 'relay://inbox' });
  t.same(
    JSON.parse((resource.contents[0] as { text: string }).text).map((m: { id: number }) => m.id),
    [first.message.id],
    'the resource is the unread inbox',
  );

  const inbox = await mcp.ok('inbox');
  t.same(
    inbox.messages.map((m: { id: number }) => m.id),
    [first.message.id],
    'inbox: unread by default',
  );
  const read = await mcp.call('read_message', { id: first.message.id });
  t.match(text(read), /hello from bob/);
  t.match(text(read), new RegExp(`${me}: read`));
  t.same((await mcp.ok('inbox')).messages, [], 'read_message marked it read');

  const reply = await mcp.ok('send_message', { to: 'bob', body: 'hi bob', replyTo: first.message.id });
  const second = await bob.rpc.call('message/send', { to: me, body: 'second' });
  const third = await bob.rpc.call('message/send', { to: me, body: 'third' });
  t.equal((await mcp.ok('mark_read', { upTo: second.message.id })).marked, 1, 'mark_read upTo');
  t.same(
    (await mcp.ok('inbox')).messages.map((m: { id: number }) => m.id),
    [third.message.id],
  );
  t.same(
    (await mcp.ok('inbox', { unread: false })).messages.map((m: { id: number }) => m.id),
    [first.message.id, second.message.id, third.message.id],
    'unread: false lists them all',
  );
  const thread = await mcp.ok('get_thread', { id: reply.message.id });
  t.same(
    thread.messages.map((m: { id: number }) => m.id),
    [first.message.id, reply.message.id],
    'the thread of the reply',
  );
  t.match((await mcp.refused('mark_read', {})).message, /give ids .* or upTo/, 'mark_read with nothing to mark');
});

t.test('search_messages finds ranked hits with snippets in the inbox, and pages', async (t) => {
  const { relay, mcp, me } = await setup(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const carol = await connectAgent(t, relay.wsUrl, { id: 'carol' });
  const deploy = await bob.rpc.call('message/send', { to: me, subject: 'deploy', body: 'the deploy of the billing service failed at step three' });
  await bob.rpc.call('message/send', { to: me, body: 'lunch at noon?' });
  await carol.rpc.call('message/send', { to: 'bob', body: 'the deploy is blocked' });
  for (let i = 0; i < 3; i++) await bob.rpc.call('message/send', { to: me, body: `deploy note ${i}` });
  const r = await mcp.call('search_messages', { query: 'deploy billing' });
  t.notOk(r.isError, text(r));
  const data = r.structuredContent as any;
  t.same(
    data.hits.map((h: any) => h.message.id),
    [deploy.message.id],
    'every word must match',
  );
  t.match(data.hits[0].snippet, /«deploy».*«billing»/, 'the snippet marks the words');
  t.match(text(r), new RegExp(`#${deploy.message.id} from bob`), 'one line per hit');
  const all = await mcp.ok('search_messages', { query: 'deploy', limit: 2 });
  t.equal(all.hits.length, 2);
  t.equal(all.more, true);
  const next = await mcp.ok('search_messages', { query: 'deploy', after: all.nextCursor });
  const ids = [...all.hits, ...next.hits].map((h: any) => h.message.id);
  t.equal(new Set(ids).size, 4, "four hits over two pages, none twice, carol's DM to bob not among them");
  t.equal((await mcp.refused('search_messages', { query: '!!!' })).code, ERRORS.invalidParams.code, 'a query without words is refused with -32602');
});

t.test('inbox waits for a message when asked', async (t) => {
  const { relay, mcp, me } = await setup(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const waiting = mcp.ok('inbox', { waitSec: 20 });
  setTimeout(() => void bob.rpc.call('message/send', { to: me, body: 'late' }), 300);
  const r = await waiting;
  t.same(
    r.messages.map((m: { body: string }) => m.body),
    ['late'],
  );
  t.equal((await mcp.refused('inbox', { waitSec: 500 })).code, ERRORS.invalidParams.code, 'waitSec is bounded by the schema');
});

t.test('claim, update and release work, with the contract codes on refusals', async (t) => {
  const { relay, mcp, me, home } = await setup(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const created = await bob.rpc.call('task/create', { title: 'fix the build', target: me });
  const claimed = await mcp.ok('claim', { taskId: created.task.id });
  t.equal(claimed.task.claimedBy, me);
  t.ok(Number.isInteger(claimed.claimToken));

  const conflict = await bob.rpc.call('task/claim', { id: created.task.id }).catch((e: { code: number }) => e);
  t.equal(conflict.code, ERRORS.conflict.code, 'bob cannot take it');

  const updated = await mcp.ok('update_task', { id: created.task.id, progress: 50, note: 'halfway' });
  t.equal(updated.task.progress, 50);
  const done = await mcp.ok('update_task', { id: created.task.id, status: 'done' });
  t.equal(done.task.status, 'done');

  const other = await bob.rpc.call('task/create', { title: 'second', target: me });
  await mcp.ok('claim', { taskId: other.task.id });
  const released = await mcp.ok('release_task', { id: other.task.id, note: 'not mine' });
  t.equal(released.task.status, 'open');
  t.equal(released.task.claimedBy, null);

  const claimable = await bob.rpc.call('message/send', { to: me, body: 'who takes this?', claimable: true });
  const viaMessage = await mcp.ok('claim', { messageId: claimable.message.id });
  t.equal(viaMessage.task.id, claimable.task.id, 'a claimable message is claimed by its id');
  // The CLI sees the claim token the MCP server stored (the same identity store).
  const file = JSON.parse((await import('node:fs')).readFileSync(join(home, 'agents', `${encodeURIComponent(me)}.json`), 'utf8'));
  t.equal(Object.values<any>(file.relays)[0].claims[String(claimable.task.id)], viaMessage.claimToken, 'claim token stored for the CLI');

  await bob.rpc.call('task/claim', { id: (await bob.rpc.call('task/create', { title: 'bob has it', target: 'bob' })).task.id });
  const taken = await bob.rpc.call('task/create', { title: 'raced', target: 'broadcast' });
  await bob.rpc.call('task/claim', { id: taken.task.id });
  const refused = await mcp.refused('claim', { taskId: taken.task.id });
  t.equal(refused.code, ERRORS.conflict.code, 'a conflict carries -32003');
  t.match(refused.message, /bob/, 'and names the holder');
  const missing = await mcp.refused('claim', { taskId: 999_999 });
  t.equal(missing.code, ERRORS.notFound.code, 'an unknown task carries the not-found code');
  const both = await mcp.refused('claim', { taskId: 1, messageId: 1 });
  t.equal(both.code, ERRORS.invalidParams.code, 'claim takes one of taskId or messageId');
  t.match(both.message, /exactly one of taskId/);
  const bad = await mcp.call('send_message', { to: 'nobody knows', body: 'x' });
  t.equal(bad.isError, true, 'an invalid target is refused');
  t.match(text(bad), /to|target/i, 'naming the field');
});

t.test('lease_acquire, lease_list, lease_renew and lease_release hold resources against other agents', async (t) => {
  const { relay, mcp, me } = await setup(t);
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const got = await mcp.ok('lease_acquire', { resources: ['src/auth/**', 'db:migrations'], reason: 'refactoring login', ttlMs: 60_000 });
  t.equal(got.lease.agentId, me);
  t.equal(got.lease.mode, 'exclusive');
  const refused = await bob.rpc.call('lease/acquire', { resources: ['src/auth/session.ts'] }).catch((e: { code: number; error: { data: any } }) => e);
  t.equal(refused.code, ERRORS.conflict.code, 'bob is kept off src/auth/session.ts');
  t.equal(refused.error.data.holder, me, 'the conflict names the MCP agent');
  t.equal(refused.error.data.reason, 'refactoring login');

  const theirs = await bob.rpc.call('lease/acquire', { resources: ['docs/**'], reason: 'rewriting the guide' });
  const conflict = await mcp.refused('lease_acquire', { resources: ['docs/README.md'] });
  t.equal(conflict.code, ERRORS.conflict.code, 'a conflict carries -32003');
  t.equal((conflict.data as any).holder, 'bob', 'and its data names the holder');
  t.match(conflict.message, /bob/);

  const listed = await mcp.call('lease_list', { resource: 'src/auth/login.ts' });
  t.same(
    (listed.structuredContent as any).leases.map((l: any) => l.id),
    [got.lease.id],
    'lease_list by an overlapping resource',
  );
  t.match(text(listed), new RegExp(`lease #${got.lease.id} exclusive src/auth/\\*\\*, db:migrations held by ${me} \\(refactoring login\\)`));
  t.same(
    (await mcp.ok('lease_list', { holder: 'bob' })).leases.map((l: any) => l.id),
    [theirs.lease.id],
  );

  const renewed = await mcp.ok('lease_renew', { leaseId: got.lease.id, ttlMs: 120_000 });
  t.ok(renewed.token > got.token, 'renewing gives a newer fencing token');
  t.ok(renewed.lease.expiresAt > got.lease.expiresAt, 'and a later expiry');
  const released = await mcp.ok('lease_release', { leaseId: got.lease.id });
  t.equal(released.lease.endedBy, 'released');
  const now = await bob.rpc.call('lease/acquire', { resources: ['src/auth/session.ts'] });
  t.equal(now.lease.agentId, 'bob', 'bob gets it once released');
  t.equal((await mcp.refused('lease_release', { leaseId: theirs.lease.id })).code, ERRORS.invalidParams.code, "no token kept for bob's lease");
  t.equal((await mcp.refused('lease_acquire', { resources: ['../etc'] })).code, ERRORS.invalidParams.code, 'a bad resource is -32602');
});

t.test('closing the MCP client takes the agent offline', async (t) => {
  const { relay, mcp, me } = await setup(t);
  const observer = await connectAgent(t, relay.wsUrl, { id: 'watcher' });
  const online = await observer.rpc.call('agent/list', {});
  t.equal(online.agents.find((a: { id: string }) => a.id === me)?.status, 'online');
  await mcp.client.close();
  await waitFor(async () => (await observer.rpc.call('agent/list', {})).agents.find((a: { id: string }) => a.id === me)?.status === 'offline', 'the agent left');
  t.pass('offline after the client closed');
});

t.test('with the relay down the server exits with the reason, without hanging', async (t) => {
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
  const url = `http://127.0.0.1:${closedPort}`;
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp'],
    env: childEnv({ AGENT_RELAY_URL: url, AGENT_RELAY_HOME: t.testdir() }, (k) => k.startsWith('AGENT_RELAY_')) as Record<string, string>,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => (transport.onclose = resolve));
  const client = new Client({ name: 'agent-relay-test', version: '1.0.0' });
  const started = Date.now();
  const err = await client.connect(transport).then(
    () => null,
    (e: Error) => e,
  );
  await exited;
  t.ok(err, 'the MCP client cannot connect');
  t.match(stderr, new RegExp(`agent-relay: relay not reachable at ${url} .*is it running\\? start it with agent-relay serve`), 'stderr says why and what to do');
  t.ok(Date.now() - started < 20_000, 'it exits within the connect bound (5 s) plus start-up: no hang');
});

t.test("the plugins' READMEs give the README's MCP configuration, word for word", async (t) => {
  const { readFileSync } = await import('node:fs');
  const claudeLine = testedBlock('mcp-claude')
    .split('\n')
    .find((l) => l.startsWith('claude mcp add'))!;
  t.ok(readFileSync(join(ROOT, 'adapters/claude/plugin/README.md'), 'utf8').includes(claudeLine), 'Claude Code plugin');
  const codexEntry = testedBlock('mcp-codex')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .join('\n');
  t.ok(readFileSync(join(ROOT, 'adapters/codex/plugin/README.md'), 'utf8').includes(codexEntry), 'Codex plugin');
});

t.test('PROTOCOL.md "MCP adapter" lists every tool and only methods of the method table', async (t) => {
  const { readFileSync } = await import('node:fs');
  const { METHODS } = await import('../../protocol/method-table.js');
  const { TOOLS } = await import('../../adapters/mcp/tools.js');
  const doc = readFileSync(join(ROOT, 'docs/PROTOCOL.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## MCP adapter'), doc.indexOf('\n## ', doc.indexOf('## MCP adapter') + 1));
  const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (.*) \|$/gm)].map((m) => ({ tool: m[1]!, methods: [...m[2]!.matchAll(/`([a-z]+\/[a-zA-Z]+)`/g)].map((x) => x[1]!) }));
  t.same(rows.map((r) => r.tool).sort(), Object.keys(TOOLS).sort(), 'one row per tool');
  for (const r of rows) for (const m of r.methods) t.ok(Object.hasOwn(METHODS, m), `${r.tool}: ${m} is a method`);
});
