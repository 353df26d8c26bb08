import { z } from 'zod';
import { CursorSchema, IdSchema, LeaseModeSchema, LeaseSchema, LimitSchema } from '../common.js';
import { parseResource } from '../lease-patterns.js';
import { LIMITS } from '../limits.js';
import { IdentityFields } from './identity.js';

/** A path pattern or SCHEME:NAME, refused with the rule it breaks (protocol/lease-patterns.ts). */
export const LeaseResourceSchema = z
  .string()
  .max(LIMITS.maxLeaseResourceChars)
  .superRefine((r, ctx) => {
    const parsed = parseResource(r);
    if ('error' in parsed) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(r)} ${parsed.error}` });
  });

const TtlSchema = z.number().int().min(LIMITS.minLeaseTtlMs).max(LIMITS.maxLeaseTtlMs);
/** The fencing token answered by lease/acquire or the newest lease/renew. */
const TokenSchema = z.number().int().positive();

export const LeaseAcquireParamsSchema = z.strictObject({
  resources: z.array(LeaseResourceSchema).min(1).max(LIMITS.maxLeaseResources),
  /** `exclusive` (default) conflicts with any overlapping lease of another agent; `shared` only with exclusive ones. */
  mode: LeaseModeSchema.optional(),
  /** Milliseconds until the lease ends unless renewed (default 5 minutes). */
  ttlMs: TtlSchema.optional(),
  /** Why it is held: shown to whoever is refused. */
  reason: z.string().max(LIMITS.maxLeaseReasonChars).optional(),
  ...IdentityFields,
});
export const LeaseAcquireResultSchema = z.object({ lease: LeaseSchema, token: z.number().int() });

export const LeaseRenewParamsSchema = z.strictObject({
  leaseId: IdSchema,
  token: TokenSchema,
  /** The new time to live from now (default: the lease's own). */
  ttlMs: TtlSchema.optional(),
  ...IdentityFields,
});
export const LeaseRenewResultSchema = z.object({
  lease: LeaseSchema,
  /** The new fencing token: the one presented before is stale from now on. */
  token: z.number().int(),
});

export const LeaseReleaseParamsSchema = z.strictObject({ leaseId: IdSchema, token: TokenSchema, ...IdentityFields });
export const LeaseReleaseResultSchema = z.object({ lease: LeaseSchema });

export const LeaseListParamsSchema = z.strictObject({
  /** Only this agent's leases. */
  holder: z.string().max(128).optional(),
  /** Only leases overlapping this resource (by the overlap rule). */
  resource: LeaseResourceSchema.optional(),
  limit: LimitSchema.optional(),
  /** Only leases with an id above this. */
  since: CursorSchema.optional(),
  ...IdentityFields,
});
export const LeaseListResultSchema = z.object({
  /** Leases in force now (not released, not expired), in id order. */
  leases: z.array(LeaseSchema),
  /** True when the page stopped at `limit` or the size budget: list again with `since` = the last id. */
  more: z.boolean().optional(),
});

export type LeaseAcquireParams = z.infer<typeof LeaseAcquireParamsSchema>;
export type LeaseAcquireResult = z.infer<typeof LeaseAcquireResultSchema>;
export type LeaseRenewParams = z.infer<typeof LeaseRenewParamsSchema>;
export type LeaseRenewResult = z.infer<typeof LeaseRenewResultSchema>;
export type LeaseReleaseParams = z.infer<typeof LeaseReleaseParamsSchema>;
export type LeaseReleaseResult = z.infer<typeof LeaseReleaseResultSchema>;
export type LeaseListParams = z.infer<typeof LeaseListParamsSchema>;
export type LeaseListResult = z.infer<typeof LeaseListResultSchema>;
