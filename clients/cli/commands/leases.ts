import { InvalidArgumentError, type Command } from 'commander';
import { LIMITS } from '../../../protocol/limits.js';
import { type CliContext, UsageError, wholeNumber } from '../context.js';
import { leasesTable, time } from '../format.js';

type Run = (action: (ctx: CliContext, ...args: any[]) => Promise<void>) => (...args: any[]) => Promise<void>;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `90s`, `10m`, `1h`, `500ms`, or bare milliseconds. */
export function duration(value: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError(`expected a duration such as 90s, 10m or 1h, got "${value}"`);
  const ms = Number(m[1]) * UNITS[m[2] ?? 'ms']!;
  if (ms < LIMITS.minLeaseTtlMs || ms > LIMITS.maxLeaseTtlMs) throw new InvalidArgumentError(`expected 1s to 24h, got "${value}"`);
  return ms;
}

export function leaseCommands(program: Command, run: Run): void {
  const lease = program.command('lease').description('hold files or named resources (SCHEME:NAME) for a while: acquire, renew, release, list');

  lease
    .command('acquire')
    .description('hold RESOURCES, all or none (paths with * and **, or names like db:migrations)')
    .argument('<resources...>', 'path patterns or SCHEME:NAME')
    .option('--shared', 'share with other shared holders (default: exclusive)')
    .option('--ttl <duration>', 'how long unless renewed: 90s, 10m, 1h (default 5m)', duration)
    .option('--reason <text>', 'why, shown to whoever is refused')
    .action(
      run(async (ctx, resources: string[], o: { shared?: boolean; ttl?: number; reason?: string }) => {
        const identity = ctx.identity();
        const r = await ctx.http.call('lease/acquire', { resources, mode: o.shared ? 'shared' : 'exclusive', ...(o.ttl ? { ttlMs: o.ttl } : {}), ...(o.reason ? { reason: o.reason } : {}) }, identity);
        // Keep the token so `lease renew` and `lease release` send it without the user copying it.
        ctx.remember({ ...identity, leases: { [String(r.lease.id)]: r.token } });
        ctx.print(r, () => `lease #${r.lease.id} (${r.lease.mode}) on ${r.lease.resources.join(' ')} until ${time(r.lease.expiresAt)}, token ${r.token}`);
      }),
    );

  lease
    .command('renew')
    .argument('<id>', 'lease id', wholeNumber)
    .description('extend a lease you hold; it gets a new token')
    .option('--ttl <duration>', 'the new time to live from now (default: the lease’s own)', duration)
    .option('--lease-token <n>', 'the lease’s newest token (default: the one stored by acquire or renew)', wholeNumber)
    .action(
      run(async (ctx, id: number, o: { ttl?: number; leaseToken?: number }) => {
        const identity = ctx.identity();
        const token = o.leaseToken ?? storedToken(identity.leases, id);
        const r = await ctx.http.call('lease/renew', { leaseId: id, token, ...(o.ttl ? { ttlMs: o.ttl } : {}) }, identity);
        ctx.remember({ ...identity, leases: { [String(id)]: r.token } });
        ctx.print(r, () => `lease #${id} renewed until ${time(r.lease.expiresAt)}, token ${r.token}`);
      }),
    );

  lease
    .command('release')
    .argument('<id>', 'lease id', wholeNumber)
    .description('end a lease you hold')
    .option('--lease-token <n>', 'the lease’s newest token (default: the stored one)', wholeNumber)
    .action(
      run(async (ctx, id: number, o: { leaseToken?: number }) => {
        const identity = ctx.identity();
        const r = await ctx.http.call('lease/release', { leaseId: id, token: o.leaseToken ?? storedToken(identity.leases, id) }, identity);
        ctx.print(r, () => `lease #${id} released`);
      }),
    );

  lease
    .command('list')
    .description('leases in force now')
    .option('--holder <id>', 'only this agent’s')
    .option('--mine', 'only those of --as')
    .option('--resource <pattern>', 'only those overlapping this resource')
    .action(
      run(async (ctx, o: { holder?: string; mine?: boolean; resource?: string }) => {
        const holder = o.mine ? ctx.identity().id : o.holder;
        const r = await ctx.http.call('lease/list', { ...(holder ? { holder } : {}), ...(o.resource ? { resource: o.resource } : {}) });
        ctx.print(r, () => (r.leases.length ? leasesTable(r.leases, Date.now()) : 'no leases'));
      }),
    );
}

function storedToken(leases: Record<string, number> | undefined, id: number): number {
  const token = leases?.[String(id)];
  if (token === undefined) throw new UsageError(`no token stored for lease #${id}: pass --lease-token (lease acquire and renew print it)`);
  return token;
}
