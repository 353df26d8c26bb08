import { Command, CommanderError, Option } from 'commander';
import { agentCommands } from './commands/agents.js';
import { liveCommands } from './commands/live.js';
import { messageCommands } from './commands/messages.js';
import { taskCommands } from './commands/tasks.js';
import { CliContext, EXIT, explain, type GlobalOptions, type Io } from './context.js';

const DEFAULT_URL = 'http://127.0.0.1:4850';

/** Extra command groups (the Claude Code hooks) plug in here without the CLI knowing them. */
export type CommandGroup = (program: Command, run: (action: (ctx: CliContext, ...args: any[]) => Promise<void>) => (...args: any[]) => Promise<void>, io: Io) => void;

/**
 * Build the `agent-relay` program. Commands print through `io` and report failures by setting
 * `exit.code`; nothing here calls process.exit, so tests run it in-process.
 */
export function buildProgram(io: Io, exit: { code: number }, groups: CommandGroup[] = []): Command {
  const program = new Command('agent-relay')
    .description('Agent Relay: agents find each other, talk and share work')
    .addOption(new Option('--url <url>', 'relay address').env('AGENT_RELAY_URL').default(DEFAULT_URL))
    .addOption(new Option('--token <token>', 'relay token').env('AGENT_RELAY_TOKEN'))
    .addOption(new Option('--as <agent-id>', 'act as this registered agent').env('AGENT_RELAY_AGENT'))
    .option('--json', 'machine-readable output: one JSON document (or one per line for streams)')
    .showHelpAfterError('(run agent-relay --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.replace(/\n$/, '')), writeErr: (s) => io.err(s.replace(/\n$/, '')) });

  const run =
    (action: (ctx: CliContext, ...args: any[]) => Promise<void>) =>
    async (...args: any[]): Promise<void> => {
      const command = args.at(-1) as Command;
      const opts = withIoEnv(command.optsWithGlobals() as GlobalOptions, program, io.env);
      const ctx = new CliContext(opts, io);
      try {
        await action(ctx, ...args.slice(0, -1));
      } catch (err) {
        const { code, message } = explain(err, { json: ctx.json, url: opts.url });
        io.err(`agent-relay: ${message}`);
        exit.code = code;
      }
    };

  program
    .command('serve')
    .description('start the relay (same as npm start)')
    .argument('[options...]', '--port N --db PATH --host ADDR --insecure --help');

  agentCommands(program, run);
  messageCommands(program, run);
  taskCommands(program, run);
  liveCommands(program, run);
  for (const group of groups) group(program, run, io);
  return program;
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

/** Run the CLI with `argv` (without node and script); resolves with the exit code. */
export async function runCli(argv: string[], io: Io, groups: CommandGroup[] = []): Promise<number> {
  if (argv[0] === 'serve') {
    // The relay parses its own flags (the same as npm start); commander only lists it in --help.
    const { serve } = await import('../../broker/main.js');
    return serve(argv.slice(1), io.err);
  }
  const exit = { code: EXIT.ok as number };
  const program = buildProgram(io, exit, groups);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are successes; everything else commander rejects is a usage error.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? EXIT.ok : EXIT.usage;
    }
    throw err;
  }
  return exit.code;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  isTTY: Boolean(process.stdout.isTTY),
  env: process.env,
};
