import { hostname } from 'node:os';
import type { Command } from 'commander';
import { listAllAgents } from '../../pages.js';
import { RelayRpcError } from '../../errors.js';
import { type CliContext, EXIT, list, RefusedError } from '../context.js';
import { agentsTable, table } from '../format.js';
import { isRelayTokenRefusal } from '../explain.js';
import { identityFile, loadIdentity } from '../identity-store.js';

type Run = (action: (ctx: CliContext, ...args: any[]) => Promise<void>) => (...args: any[]) => Promise<void>;

/** The relay knows this id under a token this home does not hold: say whose it may be and what to do. */
function anotherHolder(ctx: CliContext, id: string | undefined, hadToken: boolean): (err: unknown) => never {
  return (err) => {
    if (id && err instanceof RelayRpcError && err.kind === 'unauthorized' && !isRelayTokenRefusal(err)) {
      const ours = hadToken ? `with another token than the one stored in ${identityFile(ctx.home, id)}` : `and no token for it is stored in ${ctx.home}`;
      throw new RefusedError(
        `agent "${id}" is already registered on ${ctx.http.url} ${ours} (registered from another terminal or machine?): pick another --id, or run from the AGENT_RELAY_HOME that registered it`,
        'agentToken',
      );
    }
    throw err;
  };
}

export function agentCommands(program: Command, run: Run): void {
  program
    .command('register')
    .description('become an agent (or refresh one) and store its token for --as')
    .option('--id <id>', 'stable agent id (generated from host and cwd when absent)')
    .option('--label <label>', 'human label')
    .option('--tags <list>', 'comma-separated tags', list)
    .option('--caps <list>', 'comma-separated capabilities (default: $AGENT_RELAY_CAPS)', list)
    .option('--channels <list>', 'channels this agent hears fan-out on', list)
    .option('--client <name>', 'client kind', 'cli')
    .option('--not-ready', 'register with ready=false')
    .action(
      run(async (ctx, o: { id?: string; label?: string; tags?: string[]; caps?: string[]; channels?: string[]; client: string; notReady?: boolean }) => {
        const stored = o.id ? loadIdentity(ctx.home, o.id, ctx.http.url) : null;
        const caps = o.caps ?? (ctx.io.env.AGENT_RELAY_CAPS ? list(ctx.io.env.AGENT_RELAY_CAPS) : undefined);
        const r = await ctx.http
          .call('agent/register', {
            ...(o.id ? { id: o.id } : {}),
            ...(stored ? { agentToken: stored.token } : {}),
            ...(o.label ? { label: o.label } : {}),
            ...(o.tags ? { tags: o.tags } : {}),
            ...(caps ? { capabilities: caps } : {}),
            ...(o.channels ? { channels: o.channels } : {}),
            client: o.client,
            host: hostname(),
            cwd: process.cwd(),
            ready: !o.notReady,
          })
          .catch(anotherHolder(ctx, o.id, Boolean(stored)));
        ctx.remember({ ...(stored ?? {}), id: r.agent.id, token: r.agentToken, url: ctx.http.url });
        ctx.print({ agent: r.agent, agentToken: r.agentToken, cursor: r.cursor }, () => `registered ${r.agent.id} (token stored in ${ctx.home}); act as it with --as ${r.agent.id}`);
      }),
    );

  program
    .command('agents')
    .description('list agents')
    .option('--status <status>', 'online, busy, away or offline')
    .option('--tag <tag>', 'only agents with this tag')
    .option('--cap <capability>', 'only agents with this capability')
    .action(
      run(async (ctx, o: { status?: 'online' | 'busy' | 'away' | 'offline'; tag?: string; cap?: string }) => {
        const filter = { ...(o.status ? { status: o.status } : {}), ...(o.tag ? { tag: o.tag } : {}), ...(o.cap ? { capability: o.cap } : {}) };
        const r = { agents: await listAllAgents((p) => ctx.http.call('agent/list', p), filter) };
        ctx.print(r, () => (r.agents.length ? agentsTable(r.agents) : 'no agents'));
      }),
    );

  program
    .command('status')
    .description('relay health and counts')
    .action(
      run(async (ctx) => {
        const [health, agents, tasks] = await Promise.all([
          ctx.http.health(),
          listAllAgents((p) => ctx.http.call('agent/list', p)).then((all) => ({ agents: all })),
          ctx.http.call('task/list', { limit: 1000 }),
        ]);
        const byStatus = (values: string[]) => {
          const counts: Record<string, number> = {};
          for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
          return counts;
        };
        const result = { url: ctx.http.url, ...health, agentsByStatus: byStatus(agents.agents.map((a) => a.status)), tasksByStatus: byStatus(tasks.tasks.map((t) => t.status)) };
        // Scripts can tell: an unwritable relay exits 1 (the report is printed all the same).
        if (!health.ok) ctx.exitCode = EXIT.refused;
        ctx.print(result, () =>
          [
            `relay ${ctx.http.url}: ${health.ok ? ctx.color.green('ok') : ctx.color.red('NOT OK')}, database ${health.dbWritable ? 'writable' : ctx.color.red('not writable')}`,
            ...(health.lastCommitFailure ? [`last commit failed at ${new Date(health.lastCommitFailure.at).toISOString()}: ${health.lastCommitFailure.error}`] : []),
            table(
              ['', 'COUNT'],
              [
                ['connections', String(health.connections)],
                ['last message id', String(health.cursor)],
                ...Object.entries(result.agentsByStatus).map(([k, v]) => [`agents ${k}`, String(v)]),
                ...Object.entries(result.tasksByStatus).map(([k, v]) => [`tasks ${k}`, String(v)]),
              ],
            ),
          ].join('\n'),
        );
      }),
    );
}
