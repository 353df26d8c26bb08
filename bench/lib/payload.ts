/**
 * The same 200-byte body for every system. It starts with a marker and the send time in ms:
 * `T<ms>|xxx…` for measured messages, `W<ms>|…` for warm-up ones. Subscribers find the stamp
 * with a string search, never a full JSON parse, so the load generator is not the bottleneck.
 */
export const BODY_BYTES = 200;
const PAD = 'x'.repeat(BODY_BYTES);

export function makeBody(kind: 'T' | 'W', stampMs: number): string {
  const head = `${kind}${stampMs.toFixed(3)}|`;
  return head + PAD.slice(head.length);
}

export interface Stamp {
  measured: boolean;
  ms: number;
}

/** Parse a stamp at `at` (the index of the T/W marker); null when there is none. */
export function stampAt(text: string, at: number): Stamp | null {
  const kind = text.charCodeAt(at);
  if (kind !== 84 /* T */ && kind !== 87 /* W */) return null;
  const end = text.indexOf('|', at);
  if (end < 0) return null;
  return { measured: kind === 84, ms: Number(text.slice(at + 1, end)) };
}
