import { writeSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { agentCommands } from './commands/agents.js';
import { liveCommands } from './commands/live.js';
import { messageCommands } from './commands/messages.js';
import { leaseCommands } from './commands/leases.js';
import { taskCommands } from './commands/tasks.js';
import { InvalidRelayUrlError, relayHttpUrl } from '../relay-url.js';
import { CliContext, EXIT, UsageError, type GlobalOptions, type Io } from './context.js';
import { explain, report } from './explain.js';
import { relayHome } from './identity-store.js';

const DEFAULT_URL = 'http://127.0.0.1:4850';

/**
 * `agent-relay serve`: runs the relay with its own flags and resolves with the exit code. The CLI
 * is a client and never imports the broker: the command's entry point (bin/entries/agent-relay.ts,
 * a composition root like broker/main.ts) hands it in, loading the relay only when it is run.
 */
export type ServeCommand = (argv: string[], err: (line: string) => void) => Promise<number>;

/** `agent-relay migrate`: copies a stopped relay's SQLite file into PostgreSQL; handed in like serve. */
export type MigrateCommand = (argv: string[], out: (line: string) => void, err: (line: string) => void) => Promise<number>;

/** The commands that run the broker's own code, handed in by the entry point. */
export interface BrokerCommands {
  serve?: ServeCommand;
  migrate?: MigrateCommand;
}

/** Extra command groups (the Claude Code hooks) plug in here without the CLI knowing them. */
export type CommandGroup = (program: Command, run: (action: (ctx: CliContext, ...args: any[]) => Promise<void>) => (...args: any[]) => Promise<void>, io: Io) => void;

/**
 * Build the `agent-relay` program. Commands print through `io` and report failures by setting
 * `exit.code`; nothing here calls process.exit, so tests run it in-process.
 */
export function buildProgram(io: Io, exit: { code: number }, groups: CommandGroup[] = [], opts: { json?: boolean } = {}): Command {
  const program = new Command('agent-relay')
    .description('Agent Relay: agents find each other, talk and share work')
    .addOption(new Option('--url <url>', 'relay address').env('AGENT_RELAY_URL').default(DEFAULT_URL))
    .addOption(new Option('--token <token>', 'relay token').env('AGENT_RELAY_TOKEN'))
    .addOption(new Option('--as <agent-id>', 'act as this registered agent').env('AGENT_RELAY_AGENT'))
    .option('--json', 'machine-readable output: one JSON document (or one per line for streams)')
    .exitOverride()
    // With --json, runCli reports commander's refusals as JSON instead of these lines.
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => (opts.json ? undefined : io.err(s.replace(/\n$/, ''))) });

  const run =
    (action: (ctx: CliContext, ...args: any[]) => Promise<void>) =>
    async (...args: any[]): Promise<void> => {
      const command = args.at(-1) as Command;
      const opts = withIoEnv(command.optsWithGlobals() as GlobalOptions, program, io.env);
      let ctx: CliContext | null = null;
      try {
        opts.url = checkedUrl(opts.url, program, io.env);
        ctx = new CliContext(opts, io);
        await action(ctx, ...args.slice(0, -1));
        exit.code = ctx.exitCode;
      } catch (err) {
        const failure = explain(err, { url: opts.url, home: relayHome(io.env), tokenGiven: Boolean(opts.token), actingAs: ctx?.actingAs ?? null });
        report(io, Boolean(opts.json), failure);
        exit.code = failure.exit;
      }
    };

  program.command('serve').description('start the relay (same as npm start)').argument('[options...]', '--port N --db PATH --host ADDR --insecure --help');
  program.command('migrate').description("copy a stopped relay's SQLite database into an empty PostgreSQL database, cursors kept").argument('[options...]', '--to postgres://URL --db PATH --help');

  agentCommands(program, run);
  messageCommands(program, run);
  taskCommands(program, run);
  leaseCommands(program, run);
  liveCommands(program, run);
  for (const group of groups) group(program, run, io);
  usageAfterErrors(program, 'agent-relay');
  return program;
}

/** After a refused command line, the usage of the command that refused it, and where to read more. */
function usageAfterErrors(command: Command, path: string): void {
  command.showHelpAfterError(`usage: ${path} ${command.usage()}\n(run ${path} --help for details)`);
  for (const sub of command.commands) usageAfterErrors(sub, `${path} ${sub.name()}`);
}

/** The relay address as RelayHttpClient takes it; a wrong one is a usage error naming where it came from. */
function checkedUrl(url: string, program: Command, env: NodeJS.ProcessEnv): string {
  try {
    return relayHttpUrl(url);
  } catch (err) {
    if (!(err instanceof InvalidRelayUrlError)) throw err;
    const source = program.getOptionValueSource('url') === 'cli' ? '--url' : env.AGENT_RELAY_URL ? 'AGENT_RELAY_URL' : 'the relay address';
    throw new UsageError(`${source}: ${err.message}`);
  }
}

/** Whether the command line asks for JSON (before commander has parsed it: its refusals are JSON too). */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** Options commander's `.env()` fills from process.env; the values are taken from `io.env` instead. */
const ENV_OPTIONS = { url: 'AGENT_RELAY_URL', token: 'AGENT_RELAY_TOKEN', as: 'AGENT_RELAY_AGENT' } as const;

/**
 * Commander reads `.env()` options from process.env, but every other setting comes from `io.env`:
 * take these from `io.env` too (the command line still wins), so an in-process caller's
 * environment is the one used. With processIo both are process.env.
 */
function withIoEnv(opts: GlobalOptions, program: Command, env: NodeJS.ProcessEnv): GlobalOptions {
  const out: GlobalOptions = { ...opts };
  for (const [key, name] of Object.entries(ENV_OPTIONS) as Array<[keyof typeof ENV_OPTIONS, string]>) {
    const source = program.getOptionValueSource(key);
    if (source === 'cli') continue;
    const value = env[name];
    if (value !== undefined && value !== '') out[key] = value;
    else if (source === 'env') {
      if (key === 'url') out.url = DEFAULT_URL;
      else delete out[key];
    }
  }
  return out;
}

/**
 * Run the CLI with `argv` (without node and script); resolves with the exit code. `broker.serve`
 * runs the relay for `agent-relay serve`, `broker.migrate` is `agent-relay migrate` (a program
 * without them refuses those commands).
 */
export async function runCli(argv: string[], io: Io, groups: CommandGroup[] = [], broker: BrokerCommands = {}): Promise<number> {
  if (argv[0] === 'migrate') {
    if (!broker.migrate) {
      io.err('agent-relay migrate: this program does not migrate relay databases (use agent-relay migrate)');
      return EXIT.usage;
    }
    // It parses its own flags, as serve does.
    return broker.migrate(argv.slice(1), io.out, io.err);
  }
  if (argv[0] === 'serve') {
    const serve = broker.serve;
    if (!serve) {
      io.err('agent-relay serve: this program does not run the relay (use agent-relay serve or npm start)');
      return EXIT.usage;
    }
    // The relay parses its own flags (the same as npm start); commander only lists it in --help.
    // Its stacks point into the TypeScript sources, as under npm start (--enable-source-maps);
    // short commands skip that: reading the maps would cost their start-up.
    process.setSourceMapsEnabled(true);
    return serve(argv.slice(1), io.err);
  }
  const exit = { code: EXIT.ok as number };
  const json = wantsJson(argv);
  const program = buildProgram(io, exit, groups, { json });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; everything else commander rejects is a usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
      if (json) report(io, true, { exit: EXIT.usage, code: 'usage', message: err.message.replace(/^error: /, '') });
      return EXIT.usage;
    }
    // A command outside `run` (the adapters' own) failed: still one explained line, not a stack.
    const failure = explain(err, { url: String(program.opts().url ?? DEFAULT_URL), home: relayHome(io.env) });
    report(io, json, failure);
    return failure.exit;
  }
  return exit.code;
}

let stdoutErrors = false;
const EMPTY = Buffer.alloc(0);

export const processIo: Io = {
  out: (text) => process.stdout.write(`${text}\n`),
  outChecked: (text) => {
    // The write's callback gets the error; without a listener the 'error' event would also throw.
    if (!stdoutErrors) process.stdout.on('error', () => undefined);
    stdoutErrors = true;
    return new Promise((resolve) => process.stdout.write(`${text}\n`, (err) => resolve(!err)));
  },
  outClosed: () => {
    try {
      writeSync(1, EMPTY);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPIPE';
    }
  },
  err: (text) => process.stderr.write(`${text}\n`),
  isTTY: Boolean(process.stdout.isTTY),
  env: process.env,
};
