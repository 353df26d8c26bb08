import { resourcesOverlap, type Lease, type LeaseEnd } from '../../protocol/index.js';
import type { Change, LeaseConflict, LeaseHold, OpOf, Refusal, Results } from '../domain/store-port.js';
import { ok, refuse, type Applied } from './applied.js';
import type { Tables } from './tables.js';

/**
 * The lease ops inside the writer's open transaction (OpApplier hands them over). Every op first
 * ends the leases whose TTL passed by its `at`, so expiry is judged by the one relay clock the op
 * was planned with, and what is free is decided against the rows as committed so far.
 */
export class LeaseApplier {
  constructor(
    private readonly t: Tables,
    /** Records a change of the op being applied, for the domain to publish after the commit. */
    private readonly record: (change: Change) => void,
  ) {}

  /**
   * All or none: the lease is granted only if no lease of another agent in force at `at` overlaps
   * any resource asked for where either side is exclusive. Decided here, inside the transaction,
   * against the rows as committed so far (earlier ops of this batch included).
   */
  acquire(op: OpOf<'lease.acquire'>): Applied {
    this.expire(op.at);
    // Nothing would end it but its TTL: going offline is what releases an agent's leases.
    if (this.t.agents.get(op.agentId)?.status === 'offline') return refuse({ refused: 'holderOffline' });
    const inForce = this.t.leases.inForce(op.at);
    const own = inForce.filter((l) => l.agentId === op.agentId).length;
    if (own >= op.maxHeld) return refuse({ refused: 'full', count: own });
    const conflicts: LeaseConflict[] = [];
    for (const held of inForce) {
      if (held.agentId === op.agentId || (held.mode === 'shared' && op.mode === 'shared')) continue;
      const meet = firstOverlap(held.resources, op.resources);
      if (meet) conflicts.push({ lease: held, ...meet });
    }
    if (conflicts.length > 0) return refuse({ refused: 'leaseConflict', conflicts });
    const lease = this.t.leases.insert({ agentId: op.agentId, mode: op.mode, resources: op.resources, reason: op.reason, ttlMs: op.ttlMs, at: op.at });
    this.leaseEvent(op.at, lease, 'lease.acquired', { mode: lease.mode, resources: lease.resources, reason: lease.reason, expiresAt: lease.expiresAt });
    return ok({ lease } satisfies Results['lease.acquire']);
  }

  /** The lease the hold names, when it is in force, the presenter's, and presented with its newest token. */
  private heldLease(at: number, hold: LeaseHold): Lease | Refusal {
    this.expire(at);
    const lease = this.t.leases.get(hold.leaseId);
    if (!lease) return { refused: 'notFound' };
    if (lease.releasedAt !== null || lease.agentId !== hold.agentId || lease.token !== hold.token) return { refused: 'leaseNotHeld', lease };
    return lease;
  }

  renew(op: OpOf<'lease.renew'>): Applied {
    const held = this.heldLease(op.at, op.hold);
    if ('refused' in held) return refuse(held);
    const lease = this.t.leases.renew(held.id, op.ttlMs ?? held.ttlMs, op.at);
    this.leaseEvent(op.at, lease, 'lease.renewed', { previousToken: held.token, expiresAt: lease.expiresAt });
    return ok({ lease } satisfies Results['lease.renew']);
  }

  release(op: OpOf<'lease.release'>): Applied {
    const held = this.heldLease(op.at, op.hold);
    if ('refused' in held) return refuse(held);
    return ok({ lease: this.endLease(op.at, held, 'released') } satisfies Results['lease.release']);
  }

  /** End every lease whose TTL passed by `at`, oldest first, each with its event. */
  expire(at: number): Lease[] {
    return this.t.leases.expired(at).map((lease) => this.endLease(at, lease, 'expired'));
  }

  private endLease(at: number, lease: Lease, endedBy: LeaseEnd): Lease {
    const ended = this.t.leases.end(lease.id, endedBy, at) ?? lease;
    this.leaseEvent(at, ended, 'lease.released', { reason: endedBy });
    return ended;
  }

  private leaseEvent(at: number, lease: Lease, kind: 'lease.acquired' | 'lease.renewed' | 'lease.released', data: Record<string, unknown>): void {
    const event = this.t.events.append({ at, kind, taskId: null, agentId: lease.agentId, data: { leaseId: lease.id, token: lease.token, ...data } });
    this.record({ kind: 'lease', lease, event });
  }

  /** An agent going offline: its leases end in the same op (`expired` where the TTL had passed). */
  endAllOf(agentId: string, at: number): void {
    for (const lease of this.t.leases.heldBy(agentId)) this.endLease(at, lease, lease.expiresAt <= at ? 'expired' : 'offline');
  }
}

/** The first resource held that meets one asked for, if any. */
function firstOverlap(held: readonly string[], requested: readonly string[]): { held: string; requested: string } | null {
  for (const h of held) for (const r of requested) if (resourcesOverlap(h, r)) return { held: h, requested: r };
  return null;
}
