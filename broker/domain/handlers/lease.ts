import {
  LIMITS,
  RelayError,
  resourcesOverlap,
  type Lease,
  type LeaseAcquireParams,
  type LeaseAcquireResult,
  type LeaseListParams,
  type LeaseListResult,
  type LeaseReleaseParams,
  type LeaseReleaseResult,
  type LeaseRenewParams,
  type LeaseRenewResult,
} from '../../../protocol/index.js';
import { requireAgent, type CallContext } from '../context.js';
import { withinBudget } from '../result-budget.js';
import type { LeaseConflict, LeaseHold, Outcome } from '../store-port.js';
import { unexpected } from './task.js';

/*
 * Leases: the store decides every grant inside its transaction (apply.ts), so concurrent acquires,
 * in one batch or in batches in flight, cannot both win; these handlers plan the op and word the answer.
 */

export function acquire(ctx: CallContext, p: LeaseAcquireParams): Promise<LeaseAcquireResult> {
  const agentId = requireAgent(ctx);
  const d = ctx.domain;
  const resources = [...new Set(p.resources)];
  const op = {
    op: 'lease.acquire' as const,
    at: d.now(),
    agentId,
    mode: p.mode ?? 'exclusive',
    resources,
    reason: p.reason ?? null,
    ttlMs: p.ttlMs ?? LIMITS.defaultLeaseTtlMs,
    maxHeld: LIMITS.maxLeasesPerAgent,
  };
  return d.queue.apply(op, (o) => {
    if (o.ok) return { lease: o.value.lease, token: o.value.lease.token };
    if (o.refused === 'leaseConflict') throw conflictError(o.conflicts);
    if (o.refused === 'full') throw new RelayError('tooLarge', `too large: ${agentId} holds ${o.count} leases in force, the most one agent may; release some (or lease a wider pattern)`);
    if (o.refused === 'holderOffline')
      throw new RelayError('conflict', `agent ${agentId} is offline: send agent/heartbeat (or register again) first; an offline agent holds no leases`, { status: 'offline' });
    throw unexpected(o);
  });
}

/** -32003 naming the first holder in the way (and every other in `data.conflicts`). */
function conflictError(conflicts: readonly LeaseConflict[]): RelayError {
  const first = conflicts[0]!;
  const { lease } = first;
  const why = lease.reason ? ` ("${lease.reason}")` : '';
  const others = conflicts.length > 1 ? ` and ${conflicts.length - 1} other lease(s)` : '';
  return new RelayError(
    'conflict',
    `conflict: ${first.requested} overlaps ${first.held}, held ${lease.mode} by ${lease.agentId}${why} until ${new Date(lease.expiresAt).toISOString()}${others}; nothing was granted`,
    {
      holder: lease.agentId,
      reason: lease.reason,
      expiresAt: lease.expiresAt,
      leaseId: lease.id,
      mode: lease.mode,
      held: first.held,
      requested: first.requested,
      conflicts: conflicts.map((c) => ({
        leaseId: c.lease.id,
        holder: c.lease.agentId,
        mode: c.lease.mode,
        reason: c.lease.reason,
        expiresAt: c.lease.expiresAt,
        held: c.held,
        requested: c.requested,
      })),
    },
  );
}

export function renew(ctx: CallContext, p: LeaseRenewParams): Promise<LeaseRenewResult> {
  const hold = holdOf(ctx, p);
  const d = ctx.domain;
  return d.queue.apply({ op: 'lease.renew', at: d.now(), hold, ttlMs: p.ttlMs ?? null }, (o) => {
    if (o.ok) return { lease: o.value.lease, token: o.value.lease.token };
    throw notHeld(o, hold);
  });
}

export function release(ctx: CallContext, p: LeaseReleaseParams): Promise<LeaseReleaseResult> {
  const hold = holdOf(ctx, p);
  const d = ctx.domain;
  return d.queue.apply({ op: 'lease.release', at: d.now(), hold }, (o) => {
    if (o.ok) return { lease: o.value.lease };
    throw notHeld(o, hold);
  });
}

function holdOf(ctx: CallContext, p: { leaseId: number; token: number }): LeaseHold {
  return { leaseId: p.leaseId, agentId: requireAgent(ctx), token: p.token };
}

/** Why a renew or release was refused: unknown (-32002), another's (-32003), or no longer this token's (-32006). */
function notHeld(o: Outcome<'lease.renew'> | Outcome<'lease.release'>, hold: LeaseHold): Error {
  if (o.ok) return unexpected({});
  if (o.refused === 'notFound') return new RelayError('notFound', `leaseId: no lease ${hold.leaseId}`);
  if (o.refused !== 'leaseNotHeld') return unexpected(o);
  const { lease } = o;
  if (lease.agentId !== hold.agentId) return new RelayError('conflict', `lease ${lease.id} is held by ${lease.agentId}, not by you`, { holder: lease.agentId, leaseId: lease.id });
  if (lease.releasedAt !== null) {
    return new RelayError('staleClaim', `lease ${lease.id} ended (${lease.endedBy}) at ${new Date(lease.releasedAt).toISOString()}: acquire its resources again`, {
      leaseId: lease.id,
      endedBy: lease.endedBy,
    });
  }
  return new RelayError('staleClaim', `token: ${hold.token} is stale for lease ${lease.id} (its newest token is ${lease.token}: a later renew replaced it)`, {
    leaseId: lease.id,
    token: lease.token,
  });
}

export async function list({ domain: d }: CallContext, p: LeaseListParams): Promise<LeaseListResult> {
  const limit = p.limit ?? LIMITS.defaultListLimit;
  const inForce = await d.store.leases.list({ now: d.now(), since: p.since ?? 0, holder: p.holder ?? null });
  const matching = p.resource === undefined ? inForce : inForce.filter((l) => l.resources.some((r) => resourcesOverlap(r, p.resource!)));
  const page = withinBudget<Lease>(matching.slice(0, limit), LIMITS.maxResultBytes);
  return page.cut || matching.length > limit ? { leases: page.records, more: true } : { leases: page.records };
}
