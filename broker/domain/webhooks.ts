import { createHmac, timingSafeEqual } from 'node:crypto';

/** Standard Webhooks: a `whsec_` secret is base64 key bytes; a bare string is used as UTF-8 bytes. */
export function secretKey(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
}

/** `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>` over the raw body bytes. */
export function signStandardWebhook(secret: string, id: string, timestampSec: number, body: Buffer | string): string {
  const mac = createHmac('sha256', secretKey(secret));
  mac.update(`${id}.${timestampSec}.`);
  mac.update(body);
  return `v1,${mac.digest('base64')}`;
}

export const WEBHOOK_TOLERANCE_SEC = 5 * 60;

export type VerifyResult = { ok: true } | { ok: false; reason: string };

function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Verify Standard Webhooks headers over the raw body: timestamp within ±5 minutes, any of the
 * space-separated `v1,` signatures matching, compared in constant time.
 */
export function verifyStandardWebhook(secret: string, headers: { id: string; timestamp: string; signature: string }, body: Buffer, nowSec: number): VerifyResult {
  if (!headers.id || !headers.timestamp || !headers.signature) return { ok: false, reason: 'missing webhook-id, webhook-timestamp or webhook-signature' };
  if (!/^\d{1,12}$/.test(headers.timestamp)) return { ok: false, reason: 'webhook-timestamp is not unix seconds' };
  const ts = Number(headers.timestamp);
  if (Math.abs(nowSec - ts) > WEBHOOK_TOLERANCE_SEC) return { ok: false, reason: 'webhook-timestamp outside the 5-minute tolerance' };
  const expected = signStandardWebhook(secret, headers.id, ts, body);
  const matched = headers.signature.split(' ').some((candidate) => constantTimeEqual(candidate.trim(), expected));
  return matched ? { ok: true } : { ok: false, reason: 'webhook-signature does not match' };
}

/** GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; the secret is used as configured. */
export function verifyGithubSignature(secret: string, header: string, body: Buffer): VerifyResult {
  if (!header.startsWith('sha256=')) return { ok: false, reason: 'X-Hub-Signature-256 missing or not sha256=' };
  const expected = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
  return constantTimeEqual(header, expected) ? { ok: true } : { ok: false, reason: 'X-Hub-Signature-256 does not match' };
}
