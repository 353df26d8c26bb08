import type { Refusal } from '../domain/store-port.js';

/** What applying one op answers before its changes are attached: a value, or the precondition that failed. */
export type Applied = { ok: true; value: unknown } | ({ ok: false } & Refusal);

export function ok(value: unknown): { ok: true; value: unknown } {
  return { ok: true, value };
}

export function refuse(r: Refusal): { ok: false } & Refusal {
  return { ok: false, ...r };
}
