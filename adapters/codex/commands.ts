import type { Command } from 'commander';
import type { CommandGroup } from '../../clients/cli/main.js';
import { type CliContext, UsageError, wholeNumber } from '../../clients/cli/context.js';
import { APPROVAL_TASK_KIND, taskChoices } from '../../protocol/approvals.js';

/**
 * `agent-relay codex` (also the `codex-relay` bin): the Codex adapter daemon. And
 * `agent-relay approve`: answer a Codex approval task from a terminal.
 */
export const codexCommands: CommandGroup = (program: Command, run) => {
  program
    .command('codex')
    .description('run the Codex adapter: relay messages become turns in a live codex app-server thread')
    .option('--thread-mode <mode>', 'start (own thread), resume (the thread a Codex SessionStart hook handed over) or auto (a loaded thread of this cwd)')
    .option('--app-server <url>', 'codex app-server WebSocket (default $CODEX_APP_SERVER_URL or ws://127.0.0.1:4501)')
    .option('--cwd <dir>', 'working directory of the thread (default $CODEX_LIVE_CWD or the current one)')
    .action(
      // Through run(): a fatal error (a thread held by another writer, a refused agent token)
      // becomes the exit code runCli returns. It used to set process.exitCode, which the bins'
      // process.exit(code) overwrote with 0: a supervisor saw a clean exit.
      run(async (ctx: CliContext, o: { threadMode?: string; appServer?: string; cwd?: string }) => {
        // Loaded here, not at CLI start-up: hooks run the CLI often and should start fast.
        const [{ default: pino }, { CodexBridge }, { loadConfig, parseThreadMode }] = await Promise.all([import('pino'), import('./bridge.js'), import('./config.js')]);
        const log = pino({ base: { component: 'codex-adapter' }, level: ctx.io.env.LOG_LEVEL ?? 'info' }, pino.destination(2));
        const env = {
          ...ctx.io.env,
          AGENT_RELAY_URL: ctx.opts.url,
          ...(ctx.opts.token ? { AGENT_RELAY_TOKEN: ctx.opts.token } : {}),
          ...(o.threadMode ? { CODEX_THREAD_MODE: parseThreadMode(o.threadMode) } : {}),
          ...(o.appServer ? { CODEX_APP_SERVER_URL: o.appServer } : {}),
          ...(o.cwd ? { CODEX_LIVE_CWD: o.cwd } : {}),
        };
        const config = loadConfig(env, (m) => log.warn(m));
        const bridge = new CodexBridge(config, { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) });
        const stop = () => void bridge.stop();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          await bridge.run();
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      }),
    );

  program
    .command('approve')
    .description('answer a Codex approval task with one of the choices it offers (its meta.choices, listed in its body)')
    .argument('<task-id>', 'the approval task', wholeNumber)
    .argument('<decision>', "one of the task's choices, e.g. accept | cancel")
    .action(
      run(async (ctx: CliContext, id: number, decision: string) => {
        // Only what the request offers: the adapter would have to map anything else.
        const { task } = await ctx.http.call('task/get', { id }, ctx.optionalIdentity() ?? undefined);
        if (task.meta.kind !== APPROVAL_TASK_KIND) throw new UsageError(`task #${id} is not a Codex approval`);
        const choices = taskChoices(task);
        const chosen = choices.find((d) => d.toLowerCase() === decision.toLowerCase());
        if (!chosen) throw new UsageError(`task #${id} offers ${choices.join(', ')}; "${decision}" is not one of them`);
        if (chosen === 'cancel') {
          const r = await ctx.http.call('task/update', { id, status: 'canceled', note: 'cancel' }, ctx.optionalIdentity() ?? undefined);
          return ctx.print(r, () => `approval #${id}: cancel`);
        }
        const identity = ctx.identity();
        const claimed = await ctx.http.call('task/claim', { id }, identity);
        const r = await ctx.http.call('task/update', { id, claimToken: claimed.claimToken, status: 'done', note: chosen }, identity);
        ctx.print(r, () => `approval #${id}: ${chosen}`);
      }),
    );
};
