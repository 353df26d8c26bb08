import type { Command } from 'commander';
import { RelayUnreachableError } from '../../http-client.js';
import type { RelayClient } from '../../relay-client.js';
import { type CliContext, wholeNumber } from '../context.js';
import type { StoredIdentity } from '../identity-store.js';
import { reconnectNotice } from '../follow.js';
import { agentLine, clip, messageLine, taskLine } from '../format.js';

/**
 * The monitor records its cursor at most this often, not once per message: a burst of messages
 * would otherwise rewrite the identity file for each. A kill -9 may so lose up to this much of the
 * cursor (those messages are printed again on restart); a normal stop writes the last one.
 */
const CURSOR_SAVE_EVERY_MS = 250;

/**
 * The WebSocket client library (ws, json-rpc-2.0) is loaded by the commands that hold a socket
 * only: importing it costs a short command like `send` about a third of its start-up.
 */
const loadClientLibrary = () => import('../../index.js');

type Run = (action: (ctx: CliContext, ...args: any[]) => Promise<void>) => (...args: any[]) => Promise<void>;

/**
 * Connect, call `connected`, and resolve when the client closes for good (reject with its reason)
 * or the process is interrupted. Ctrl-C/SIGTERM is listened for before connecting: the relay
 * counts the connection before connect() resolves here, and a signal in between used to kill the
 * process uncleanly; a connect that fails because of that signal is a clean stop, not an error.
 */
async function connectUntilStopped(client: RelayClient, connected: () => void = () => undefined): Promise<void> {
  let interrupted = false;
  const closed = new Promise<void>((resolve, reject) => {
    const stop = () => {
      interrupted = true;
      void client.close().then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    client.once('closed', (reason) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (reason && !interrupted) reject(reason);
      else resolve();
    });
  });
  closed.catch(() => undefined); // awaited below; a failed connect() is what gets reported
  try {
    await client.connect();
  } catch (err) {
    if (!interrupted) throw err;
  }
  if (!interrupted) connected();
  await closed;
}

export function liveCommands(program: Command, run: Run): void {
  program
    .command('tail')
    .description('live feed of messages, tasks and agents (one JSON object a line with --json)')
    .option('--since <id>', 'replay messages after this id first', wholeNumber)
    .option('--events', 'also print the event log')
    .action(
      run(async (ctx, o: { since?: number; events?: boolean }) => {
        // A refused WebSocket upgrade only reads as a failed connection: ask over HTTP first, so a
        // missing relay token is reported as such (and an absent relay as unreachable).
        await ctx.http.health();
        const client = (await loadClientLibrary()).createRelayClient({
          url: ctx.opts.url,
          ...(ctx.opts.token ? { token: ctx.opts.token } : {}),
          observe: o.events ? ['messages', 'tasks', 'agents', 'events'] : ['messages', 'tasks', 'agents'],
          ...(o.since !== undefined ? { since: o.since } : {}),
        });
        const out = (kind: string, data: unknown, human: string) => ctx.io.out(ctx.json ? JSON.stringify({ kind, ...(data as object) }) : human);
        client.on('message', (m) => out('message', { message: m }, messageLine(m, ctx.color)));
        client.on('task', (u) => out('task', u, `${taskLine(u.task, ctx.color)}  (${u.event.kind})`));
        client.on('agent', (a) => out('agent', { agent: a }, agentLine(a, ctx.color)));
        client.on('event', (e) => out('event', { event: e }, ctx.color.dim(`event ${e.kind} ${e.agentId ?? ''} ${e.taskId ? `task #${e.taskId}` : ''}`.trimEnd())));
        client.on('disconnected', (d) => {
          if (d.willReconnect) reconnectNotice(ctx, d.reason, d.delayMs ?? 0);
        });
        await connectUntilStopped(client, () => {
          if (!ctx.json) ctx.io.err(`following ${client.url} (Ctrl-C to stop)`);
        });
      }),
    );

  program
    .command('monitor')
    .description('hold a WebSocket as --as and print one line per incoming message (Claude Code monitor)')
    .option('--max-body <n>', 'clip bodies to this many characters', '200')
    .action(run(async (ctx, o: { maxBody: string }) => runMonitor(ctx, ctx.identity(), Number(o.maxBody) || 200)));
}

/** How the Claude monitor hands a message over: claim it first, print it, undo the claim when printing failed. */
export interface MonitorHandOff {
  /** Called before a message is printed; false: it was already delivered another way (not printed, nor acknowledged). */
  claim(messageId: number): boolean;
  /** Write the line; false when it could not be written (the reader is gone). */
  print(line: string): Promise<boolean>;
  /** The claimed message was not printed after all: let another path deliver it. */
  release(messageId: number): void;
}

/**
 * Hold a WebSocket as `identity` and print one line per incoming message, each acknowledged as
 * `injected` once printed. Resumes after the last message it printed, across restarts. With
 * `handOff` (the Claude monitor) a message is claimed before it is printed; when a line cannot be
 * written the claim is released, the message is neither acknowledged nor counted in the cursor, and
 * the monitor stops: its reader (Claude) is gone.
 */
export async function runMonitor(ctx: CliContext, identity: StoredIdentity, maxBody: number, handOff?: MonitorHandOff): Promise<void> {
  // It waits for a relay that is not up yet, but a relay that refuses the relay token would be
  // waited for forever: ask over HTTP once, and let only "not reachable" through.
  await ctx.http.health().catch((err: unknown) => {
    if (!(err instanceof RelayUnreachableError)) throw err;
  });
  const client = (await loadClientLibrary()).createRelayClient({
    url: ctx.opts.url,
    ...(ctx.opts.token ? { token: ctx.opts.token } : {}),
    agent: { id: identity.id },
    agentToken: identity.token,
    ...(identity.cursor !== undefined ? { since: identity.cursor } : {}),
    waitForRelay: true,
  });
  let pendingSave: NodeJS.Timeout | null = null;
  const saveCursor = () => {
    if (pendingSave) clearTimeout(pendingSave);
    pendingSave = null;
    ctx.remember(identity);
  };
  const seen = (id: number) => {
    identity.cursor = Math.max(identity.cursor ?? 0, id);
    pendingSave ??= setTimeout(saveCursor, CURSOR_SAVE_EVERY_MS);
  };
  const print = handOff?.print ?? (async (line: string) => (ctx.io.out(line), true));
  let stopped = false;
  client.on('message', (m) => {
    if (stopped) return;
    if (handOff && !handOff.claim(m.id)) return seen(m.id);
    const where = m.channel ? ` in ${m.channel}` : '';
    const task = m.claimable ? ` (claimable: agent-relay claim --as ${identity.id} ${m.taskId})` : '';
    const line = ctx.json
      ? JSON.stringify(m)
      : `relay message #${m.id} from ${m.from}${where}${task}: ${clip(m.body, maxBody)} (reply: agent-relay send --as ${identity.id} --reply-to ${m.id} ${m.from} "...")`;
    void print(line).then((printed) => {
      if (printed) {
        seen(m.id);
        void client.call('message/ack', { id: m.id, state: 'injected' }).catch(() => undefined);
        return;
      }
      handOff?.release(m.id);
      if (stopped) return;
      stopped = true;
      void client.close();
    });
  });
  try {
    await connectUntilStopped(client);
  } finally {
    if (pendingSave) saveCursor();
  }
}
