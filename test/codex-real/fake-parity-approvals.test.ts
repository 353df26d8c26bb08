import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { startFakeAppServer, type TurnPlan } from '../fakes/codex-app-server.js';
import { waitFor } from '../helpers/wait.js';
import { realAppServerAlone } from './direct.js';

/**
 * One script of an approval exchange, run against the real 0.171.0 app-server and against the
 * fake (test/fakes/codex-app-server.ts), comparing what two clients see with ids, paths and
 * timestamps normalised, so the fake cannot drift from the real approvals: the request (method,
 * param keys in order, availableDecisions, commandActions, the shell string), the replay to a
 * client that resumes the thread, serverRequest/resolved (to every subscriber, the answering
 * client too), the item after accept and after a decision outside the enum, and an interrupt
 * while a request is pending.
 */

/** Our calls' ids start here, so a response with a lower id answers one of our answers. */
const FIRST_CALL_ID = 1000;

/** A raw JSON-RPC client recording every frame (AppServerConnection drops answers to nothing). */
class Client {
  readonly frames: any[] = [];
  private nextId = FIRST_CALL_ID;
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (d) => this.frames.push(JSON.parse(d.toString())));
  }
  static async open(t: Test, url: string): Promise<Client> {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    t.teardown(() => ws.terminate());
    const c = new Client(ws);
    await c.call('initialize', { clientInfo: { name: 'parity', title: 'parity', version: '0.0.1' }, capabilities: { experimentalApi: false } });
    c.ws.send(JSON.stringify({ method: 'initialized' }));
    return c;
  }
  async call(method: string, params: Record<string, unknown>): Promise<any> {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, method, params }));
    await waitFor(() => this.frames.some((f) => f.id === id && f.method === undefined), `${method} answered`, 15_000);
    const r = this.frames.find((f) => f.id === id && f.method === undefined);
    if (r.error) throw new Error(`${method}: ${r.error.message}`);
    return r.result;
  }
  respond(id: unknown, result: unknown): void {
    this.ws.send(JSON.stringify({ id, result }));
  }
  requests(): any[] {
    return this.frames.filter((f) => f.id !== undefined && typeof f.method === 'string');
  }
  of(method: string): any[] {
    return this.frames.filter((f) => f.method === method && f.id === undefined).map((f) => f.params);
  }
}

interface Target {
  url: string;
  cwd: string;
  /** The next turn asks to run `command` (and, unless `interrupted`, then answers text). */
  asks(command: string, interrupted?: boolean): void;
}

/** The script; returns what each client saw, normalised. */
async function script(t: Test, target: Target) {
  const a = await Client.open(t, target.url);
  const { thread } = await a.call('thread/start', { cwd: target.cwd, approvalPolicy: 'untrusted', sandbox: 'read-only' });
  const turn = async (text: string) => (await a.call('turn/start', { threadId: thread.id, input: [{ type: 'text', text, text_elements: [] }] })).turn;
  const turnEnds = (c: Client, n: number) => waitFor(() => c.of('turn/completed').length === n, `turn/completed #${n}`, 15_000);

  // 1. Asked; a second client resumes the thread, gets the request replayed and accepts it.
  target.asks('touch one.txt');
  await turn('one');
  await waitFor(() => a.requests().length === 1, 'request 1', 15_000);
  const first = a.requests()[0].id;
  const b = await Client.open(t, target.url);
  const resumed = await b.call('thread/resume', { threadId: thread.id });
  await waitFor(() => b.requests().length === 1, 'the replay to B', 15_000);
  const replayAfterResume = b.frames.indexOf(b.requests()[0]) > b.frames.findIndex((f) => f.result?.thread?.id === thread.id);
  b.respond(first, { decision: 'accept' });
  await turnEnds(a, 1);
  // 2. A decision outside the enum (a v1 word): no error answer, the item fails, the turn goes on.
  target.asks('touch two.txt');
  await turn('two');
  await waitFor(() => a.requests().length === 2, 'request 2', 15_000);
  a.respond(a.requests()[1].id, { decision: 'approved' });
  await turnEnds(a, 2);
  // 3. Interrupted while a request is pending.
  target.asks('touch three.txt', true);
  const third = await turn('three');
  await waitFor(() => a.requests().length === 3, 'request 3', 15_000);
  await a.call('turn/interrupt', { threadId: thread.id, turnId: third.id });
  await turnEnds(a, 3);
  await waitFor(() => [a, b].every((c) => c.of('serverRequest/resolved').length === 3), 'three serverRequest/resolved each', 15_000);

  const norm = (c: Client) =>
    c.frames
      .filter(
        (f) =>
          (f.id !== undefined && f.method !== undefined) ||
          ['serverRequest/resolved', 'turn/completed'].includes(f.method) ||
          (f.method === 'item/completed' && f.params.item.type === 'commandExecution'),
      )
      .map((f) => {
        if (f.id !== undefined) {
          const p = f.params;
          return {
            request: f.method,
            id: f.id - first,
            keys: Object.keys(p),
            kind: p.kind,
            command: p.command,
            commandActions: p.commandActions,
            proposedExecpolicyAmendment: p.proposedExecpolicyAmendment,
            availableDecisions: p.availableDecisions,
            ids: [p.threadId === thread.id, typeof p.turnId, typeof p.itemId, typeof p.startedAtMs, p.environmentId],
          };
        }
        if (f.method === 'serverRequest/resolved') return { resolved: f.params.requestId - first, keys: Object.keys(f.params), thread: f.params.threadId === thread.id };
        if (f.method === 'item/completed') return { item: f.params.item.type, status: f.params.item.status };
        return { turn: f.params.turn.status };
      });
  // Answers to our answers: none on either server (an invalid decision is not a JSON-RPC error).
  const answered = [a, b].map((c) => c.frames.filter((f) => f.id !== undefined && f.method === undefined && f.id < FIRST_CALL_ID).length);
  return { a: norm(a), b: norm(b), resumedStatus: resumed.thread.status, replayAfterResume, answered };
}

t.test('approvals: the fake and 0.171.0 agree on the exchange', async (t) => {
  const real = await realAppServerAlone(t);
  const realSeen = await script(t, {
    url: real.app.directUrl,
    cwd: real.cwd,
    asks(command, interrupted) {
      real.model.next({ call: { name: 'exec_command', arguments: { cmd: command } } });
      if (!interrupted) real.model.next({ text: 'done' });
    },
  });

  const plans: TurnPlan[] = [];
  const fake = await startFakeAppServer({ turnScript: () => plans.shift() });
  t.teardown(() => fake.close());
  const fakeSeen = await script(t, {
    url: fake.url,
    cwd: real.cwd,
    asks(command) {
      plans.push({ approvals: [{ kind: 'commandExecution', command }], reply: 'done' });
    },
  });

  t.comment(`real, client A: ${JSON.stringify(realSeen.a)}`);
  t.comment(`real, client B: ${JSON.stringify(realSeen.b)}`);
  t.same(fakeSeen.a, realSeen.a, 'client A (started the thread, answered the invalid decision, interrupted)');
  t.same(fakeSeen.b, realSeen.b, 'client B (resumed mid-request, accepted)');
  t.same(fakeSeen.resumedStatus, realSeen.resumedStatus, 'the resumed thread waits on approval');
  t.same([fakeSeen.replayAfterResume, realSeen.replayAfterResume], [true, true], "the replay comes after the resume's answer");
  t.same(realSeen.answered, [0, 0]);
  // The script's own expectations, so a change on both sides is seen too.
  t.match(realSeen.a, [
    {
      request: 'item/commandExecution/requestApproval',
      id: 0,
      command: "/bin/bash -lc 'touch one.txt'",
      availableDecisions: ['accept', { acceptWithExecpolicyAmendment: { execpolicy_amendment: ['touch', 'one.txt'] } }, 'cancel'],
    },
    { resolved: 0, keys: ['threadId', 'requestId'], thread: true },
    { item: 'commandExecution', status: 'completed' },
    { turn: 'completed' },
    { request: 'item/commandExecution/requestApproval', id: 1 },
    { resolved: 1 },
    { item: 'commandExecution', status: 'failed' },
    { turn: 'completed' },
    { request: 'item/commandExecution/requestApproval', id: 2 },
    { turn: 'interrupted' },
    { resolved: 2 },
  ]);
});
