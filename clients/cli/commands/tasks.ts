import { InvalidArgumentError, type Command } from 'commander';
import type { TaskStatus } from '../../../protocol/common.js';
import { RelayRpcError } from '../../errors.js';
import { getWholeTask } from '../../pages.js';
import { type CliContext, UsageError, wholeNumber } from '../context.js';
import { eventLine, table, tasksTable, time } from '../format.js';

type Run = (action: (ctx: CliContext, ...args: any[]) => Promise<void>) => (...args: any[]) => Promise<void>;

function progress(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 100) throw new InvalidArgumentError(`expected 0–100, got "${value}"`);
  return n;
}

/** The ingress checks the integration's secret, not the relay token: a refusal says which one to check. */
function secretHint(integration: string): (err: unknown) => never {
  return (err) => {
    if (err instanceof RelayRpcError && err.kind === 'unauthorized') {
      throw new Error(`${err.message} (check --secret or AGENT_RELAY_INTEGRATION_SECRET against integration ${integration} in the relay's integrations file)`);
    }
    throw err;
  };
}

function jsonObject(value: string): Record<string, unknown> {
  try {
    const v = JSON.parse(value) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new InvalidArgumentError('expected a JSON object');
}

export function taskCommands(program: Command, run: Run): void {
  program
    .command('claim')
    .description('claim task ID (or, with --message, the task of claimable message ID)')
    .argument('<id>', 'task id, or message id with --message', wholeNumber)
    .option('--message', 'ID is a claimable message id')
    .action(
      run(async (ctx, id: number, o: { message?: boolean }) => {
        const identity = ctx.identity();
        const r = o.message ? await ctx.http.call('message/claim', { id }, identity) : await ctx.http.call('task/claim', { id }, identity);
        // Keep the claim token so `task update` and `task release` send it without the user copying it.
        ctx.remember({ ...identity, claims: { ...(identity.claims ?? {}), [String(r.task.id)]: r.claimToken } });
        ctx.print(r, () => `claimed task #${r.task.id} "${r.task.title}" as ${identity.id} (claim token ${r.claimToken})`);
      }),
    );

  program
    .command('tasks')
    .description('list tasks')
    .option('--status <status>', 'open, claimed, in_progress, blocked, done, failed or canceled')
    .option('--target <target>', 'only tasks offered to this target')
    .option('--mine', 'only tasks claimed by --as')
    .option('--limit <n>', 'at most this many', wholeNumber)
    .action(
      run(async (ctx, o: { status?: TaskStatus; target?: string; mine?: boolean; limit?: number }) => {
        const r = await ctx.http.call('task/list', {
          ...(o.status ? { status: o.status } : {}),
          ...(o.target ? { target: o.target } : {}),
          ...(o.mine ? { claimedBy: ctx.identity().id } : {}),
          ...(o.limit ? { limit: o.limit } : {}),
        });
        ctx.print(r, () => (r.tasks.length ? tasksTable(r.tasks) : 'no tasks'));
      }),
    );

  const task = program.command('task').description('one task: show, update, release');

  task
    .command('show')
    .argument('<id>', 'task id', wholeNumber)
    .description('the task with its events and callback deliveries')
    .action(
      run(async (ctx, id: number) => {
        const r = await getWholeTask((p) => ctx.http.call('task/get', p), id);
        ctx.print(r, () => {
          const t = r.task;
          const lines = [
            `task #${t.id}: ${t.title}`,
            table(
              ['', ''],
              [
                ['status', `${t.status} ${t.progress}%`],
                ['owner', t.claimedBy ?? '-'],
                ['target', t.target],
                ['source', t.source],
                ['dedupe key', t.dedupeKey ?? '-'],
                ['occurrences', String(t.occurrences)],
                ['created', time(t.createdAt)],
              ],
            ).replace(/^.*\n/, ''),
          ];
          if (t.body) lines.push('', t.body);
          lines.push('', 'events:', ...r.events.map((e) => `  ${eventLine(e)}`));
          if (r.callbacks.length) {
            lines.push('', 'callbacks:', ...r.callbacks.map((c) => `  ${c.state.padEnd(9)} attempts ${c.attempts}  ${c.lastStatus ?? ''} ${c.lastError ?? ''}  ${c.url}`.trimEnd()));
          }
          return lines.join('\n');
        });
      }),
    );

  task
    .command('update')
    .argument('<id>', 'task id', wholeNumber)
    .description('change status or progress of a task you claimed (or cancel one)')
    .option('--status <status>', 'in_progress, blocked, done, failed or canceled')
    .option('--progress <percent>', '0–100', progress)
    .option('--note <text>', 'a note recorded with the event')
    .action(
      run(async (ctx, id: number, o: { status?: Exclude<TaskStatus, 'open' | 'claimed'>; progress?: number; note?: string }) => {
        if (o.status === undefined && o.progress === undefined && o.note === undefined) throw new UsageError('task update needs --status, --progress or --note');
        const identity = ctx.optionalIdentity();
        const claimToken = identity?.claims?.[String(id)];
        const r = await ctx.http.call(
          'task/update',
          {
            id,
            ...(claimToken !== undefined ? { claimToken } : {}),
            ...(o.status ? { status: o.status } : {}),
            ...(o.progress !== undefined ? { progress: o.progress } : {}),
            ...(o.note ? { note: o.note } : {}),
          },
          identity ?? undefined,
        );
        ctx.print(r, () => `task #${r.task.id} is ${r.task.status} ${r.task.progress}%`);
      }),
    );

  task
    .command('release')
    .argument('<id>', 'task id', wholeNumber)
    .description('give a claimed task back so someone else can take it')
    .option('--note <text>', 'why')
    .action(
      run(async (ctx, id: number, o: { note?: string }) => {
        const identity = ctx.identity();
        const claimToken = identity.claims?.[String(id)];
        const r = await ctx.http.call('task/release', { id, ...(claimToken !== undefined ? { claimToken } : {}), ...(o.note ? { note: o.note } : {}) }, identity);
        ctx.print(r, () => `task #${r.task.id} released: ${r.task.status}`);
      }),
    );

  program
    .command('event')
    .description('open (or resolve) a task through an integration, as an alerting tool would')
    .requiredOption('--integration <name>', 'integration name from the relay’s integrations file')
    .option('--secret <secret>', 'the integration secret (default: $AGENT_RELAY_INTEGRATION_SECRET)')
    .requiredOption('--title <title>', 'what happened')
    .option('--body <text>', 'details')
    .option('--target <target>', 'who should handle it (default: the integration’s target)')
    .option('--channel <channel>', 'channel')
    .option('--dedupe-key <key>', 'same key while open: counted as another occurrence')
    .option('--resolve', 'close the open task with this dedupe key as done')
    .option('--meta <json>', 'extra fields, a JSON object', jsonObject)
    .action(
      run(
        async (
          ctx,
          o: { integration: string; secret?: string; title: string; body?: string; target?: string; channel?: string; dedupeKey?: string; resolve?: boolean; meta?: Record<string, unknown> },
        ) => {
          const secret = o.secret ?? ctx.io.env.AGENT_RELAY_INTEGRATION_SECRET;
          if (!secret) throw new UsageError('event needs the integration secret: --secret or AGENT_RELAY_INTEGRATION_SECRET');
          if (o.resolve && !o.dedupeKey) throw new UsageError('--resolve needs --dedupe-key: it closes the open task with that key');
          const r = await ctx.http
            .ingress(o.integration, secret, {
              title: o.title,
              ...(o.body ? { body: o.body } : {}),
              ...(o.target ? { target: o.target } : {}),
              ...(o.channel ? { channel: o.channel } : {}),
              ...(o.dedupeKey ? { dedupeKey: o.dedupeKey } : {}),
              action: o.resolve ? 'resolve' : 'trigger',
              ...(o.meta ? { meta: o.meta } : {}),
            })
            .catch(secretHint(o.integration));
          ctx.print(r, () => {
            const t = r.task as { id: number; status: string; occurrences: number } | undefined;
            if (r.duplicate) return 'duplicate delivery: already recorded';
            return t ? `task #${t.id} ${r.created ? 'opened' : o.resolve ? 'resolved' : `seen again (×${t.occurrences})`}: ${t.status}` : JSON.stringify(r);
          });
        },
      ),
    );
}
