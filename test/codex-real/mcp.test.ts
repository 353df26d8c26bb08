import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ROOT, trackChild, untrackChild } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';
import { connectAgent } from '../helpers/ws-client.js';
import { README_RELAY_URL, testedBlock } from '../helpers/readme.js';
import { codexCommand, codexConfigToml, type FakeModel, startFakeModel } from './harness.js';

/**
 * The README's `[mcp_servers]` entry in the real Codex (0.171, `codex exec`, offline against the
 * fake model): Codex starts `agent-relay mcp`, offers its tools to the model, and runs the one the
 * model calls, which reaches a relay agent. Nothing but 127.0.0.1 is reached.
 */

/** The entry the README gives, with this relay's address. */
function mcpEntry(relayUrl: string): string {
  return `\n${testedBlock('mcp-codex').replace(README_RELAY_URL, relayUrl)}\n`;
}

/** `codex exec PROMPT` with stdin closed (exec reads a piped stdin to its end before it starts). */
async function codexExec(t: Test, dir: string, prompt: string): Promise<{ code: number | null; out: string }> {
  const codex = codexCommand();
  const child = spawn(codex.command, [...codex.args, 'exec', '--skip-git-repo-check', prompt], {
    cwd: join(dir, 'project'),
    env: { PATH: `${join(dir, 'bin')}${delimiter}${process.env.PATH ?? ''}`, HOME: dir, CODEX_HOME: join(dir, 'codex-home'), MOCK_API_KEY: 'mock-key', RUST_LOG: 'warn', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackChild(child.pid!);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearTimeout(timer);
  untrackChild(child.pid!);
  t.comment(`codex exec ${JSON.stringify(prompt)}: exit ${code}`);
  return { code, out };
}

function setup(dir: string, model: FakeModel, relayUrl: string): void {
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'project'));
  mkdirSync(join(dir, 'codex-home'));
  symlinkSync(join(ROOT, 'bin', 'agent-relay.js'), join(dir, 'bin', 'agent-relay'));
  writeFileSync(join(dir, 'codex-home', 'config.toml'), codexConfigToml(model.url) + mcpEntry(relayUrl));
}

/** The function tools a model request offers, by name. */
/** The tools a model request offers: `namespace/name` for a namespace's tools (0.171 groups an MCP server's tools in one). */
function toolNames(body: any): string[] {
  return (body?.tools ?? []).flatMap((x: any) => (x.type === 'namespace' ? (x.tools ?? []).map((y: any) => `${x.name}/${y.name}`) : [x.name]));
}

t.test('Codex offers the relay tools to the model and runs the one it calls', async (t) => {
  // The test's one testdir (a second t.testdir() call would empty it, the relay's database with it).
  const dir = t.testdir();
  const relay = await startRelay(t, {}, { dir: join(dir, 'relay') });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const model = await startFakeModel(t);
  setup(dir, model, relay.url);

  const first = await codexExec(t, dir, 'who is online?');
  t.equal(first.code, 0, `codex exec ran (${first.out.trim().split('\n').at(-1)})`);
  const offered = toolNames(model.responses()[0]?.body);
  const relayTools = offered.filter((n) => /agent.relay/.test(n));
  t.ok(relayTools.length >= 10, `the relay's tools are offered to the model: ${relayTools.join(', ')}`);
  const send = relayTools.find((n) => n.endsWith('send_message'));
  t.ok(send, 'send_message among them');

  const [namespace, name] = send!.split('/') as [string, string];
  model.next({ call: { namespace, name, arguments: { to: 'bob', body: 'hello from codex over MCP' } } });
  model.next({ text: 'sent' });
  const second = await codexExec(t, dir, 'tell bob hello');
  t.equal(second.code, 0, `codex exec ran the tool (${second.out.trim().split('\n').at(-1)})`);
  await waitFor(() => bob.rpc.notifications.some((n) => n.method === 'message/new' && (n.params as any).message.body === 'hello from codex over MCP'), 'bob got the message');
  const got = bob.rpc.notifications.find((n) => n.method === 'message/new')!.params as any;
  t.match(got.message.from, /-codex-project$/, 'sent as the MCP agent HOST-codex-FOLDER');
  const toolOutput = JSON.stringify(model.responses().at(-1)?.body?.input ?? []);
  t.match(toolOutput, /sent #\d+ to bob/, "the tool's answer went back to the model");
});

t.test('through MCP tools alone, a Codex agent finds who is online, messages, searches, claims and holds a lease', async (t) => {
  const dir = t.testdir();
  const relay = await startRelay(t, {}, { dir: join(dir, 'relay') });
  const bob = await connectAgent(t, relay.wsUrl, { id: 'bob' });
  const model = await startFakeModel(t);
  setup(dir, model, relay.url);
  t.equal((await codexExec(t, dir, 'hello')).code, 0, 'a first session registers the agent');
  const me = (await bob.rpc.call('agent/list', {})).agents.find((a: { client: string }) => a.client === 'codex-mcp').id as string;
  await bob.rpc.call('message/send', { to: me, body: 'the deploy of billing failed at step three' });
  const task = (await bob.rpc.call('task/create', { title: 'fix the billing deploy', target: me })).task;

  const ns = 'mcp__agent_relay';
  const steps: Array<[string, Record<string, unknown>]> = [
    ['list_agents', {}],
    ['send_message', { to: 'bob', body: 'looking at billing now' }],
    ['search_messages', { query: 'billing deploy' }],
    ['claim', { taskId: task.id }],
    ['lease_acquire', { resources: ['services/billing/**'], reason: 'fixing the deploy' }],
  ];
  for (const [name, args] of steps) model.next({ call: { namespace: ns, name, arguments: args } });
  model.next({ text: 'on it' });
  const run = await codexExec(t, dir, 'take the billing deploy');
  t.equal(run.code, 0, `codex exec ran five tools (${run.out.trim().split('\n').at(-1)})`);

  // What each tool answered, as the model got it (the function_call_output items of the last request).
  const outputs = (model.responses().at(-1)?.body?.input ?? []).filter((i: any) => i.type === 'function_call_output').map((i: any) => String(i.output));
  t.equal(outputs.length, steps.length, 'five tool answers went back to the model');
  t.match(outputs[0], /"id":"bob"/, 'list_agents: bob is online');
  t.match(outputs[1], /sent #\d+ to bob/, 'send_message');
  t.match(outputs[2], /«billing»/, 'search_messages: a snippet with the words marked');
  t.match(outputs[3], new RegExp(`claimed task #${task.id}`), 'claim');
  t.match(outputs[4], /acquired lease #\d+ exclusive services\/billing\/\*\*/, 'lease_acquire');

  await waitFor(() => bob.rpc.notifications.some((n) => n.method === 'message/new' && (n.params as any).message.body === 'looking at billing now'), 'bob got the message');
  // The session is over: the server left, which released its claim and its lease (the presence rules).
  const events = (await bob.rpc.call('event/list', {})).events as Array<{ kind: string; agentId: string | null; taskId: number | null; data: any }>;
  const mine = events.filter((e) => e.agentId === me).map((e) => e.kind);
  t.ok(mine.includes('task.claimed') && mine.includes('lease.acquired'), `the Codex agent claimed the task and took the lease (${mine.join(', ')})`);
  const released = events.find((e) => e.kind === 'lease.released' && e.agentId === me);
  t.equal(released?.data.reason, 'offline', 'the lease ended when the session ended and the agent left');
  t.equal((await bob.rpc.call('task/get', { id: task.id })).task.status, 'open', 'and the task is open again');
});
