import { z } from 'zod';
import { ChannelSchema, MetaSchema, RelayError, TargetSchema, type TaskCreateParams } from '../../protocol/index.js';
import { illFormedMessage, illFormedStringPath } from '../../protocol/well-formed.js';
import type { Domain } from '../../broker/domain/domain.js';
import { checkCreate, createTask } from '../../broker/domain/handlers/task.js';
import type { HttpExchange } from '../../broker/domain/ports.js';
import { safeEqual } from '../../broker/domain/tokens.js';
import { verifyGithubSignature, verifyStandardWebhook, type VerifyResult } from '../../broker/domain/webhooks.js';
import type { Integration } from '../../broker/integrations.js';
import { decodeSegment, sendError, sendJson } from './respond.js';

/** What an integration may send; fields map onto task/create. Unknown fields are ignored. */
export const IngressBodySchema = z.object({
  title: z.string().min(1).max(512),
  target: TargetSchema.optional(),
  channel: ChannelSchema.optional(),
  body: z.string().max(256 * 1024).optional(),
  dedupeKey: z.string().min(1).max(256).optional(),
  action: z.enum(['trigger', 'resolve']).optional(),
  meta: MetaSchema.optional(),
  callbackUrl: z.url({ protocol: /^https?$/ }).max(2048).optional(),
});

/**
 * Authenticate a delivery over the raw body, before any parse or write: a bearer secret, a
 * Standard Webhooks signature (5-minute tolerance), or a GitHub X-Hub-Signature-256. Returns the
 * replay key (webhook-id / X-GitHub-Delivery) when the scheme has one.
 */
export function authenticateDelivery(integration: Integration, ex: HttpExchange, nowSec: number): VerifyResult & { replayKey?: string } {
  const h = ex.headers;
  const bearer = /^Bearer\s+(.+)$/i.exec(h.authorization ?? '');
  if (bearer) {
    if (!safeEqual(bearer[1]!.trim(), integration.secret)) return { ok: false, reason: 'bearer secret does not match' };
    return h['webhook-id'] ? { ok: true, replayKey: h['webhook-id'] } : { ok: true };
  }
  if (h['webhook-signature'] !== undefined || h['webhook-id'] !== undefined) {
    const r = verifyStandardWebhook(integration.secret, { id: h['webhook-id'] ?? '', timestamp: h['webhook-timestamp'] ?? '', signature: h['webhook-signature'] ?? '' }, ex.body, nowSec);
    return r.ok ? { ok: true, replayKey: h['webhook-id']! } : r;
  }
  if (h['x-hub-signature-256'] !== undefined) {
    const r = verifyGithubSignature(integration.secret, h['x-hub-signature-256'], ex.body);
    if (!r.ok) return r;
    return h['x-github-delivery'] ? { ok: true, replayKey: `github:${h['x-github-delivery']}` } : { ok: true };
  }
  return { ok: false, reason: 'no credentials: send a bearer secret, Standard Webhooks headers, or X-Hub-Signature-256' };
}

/** POST /api/integrations/:name/events → task/create with source = name, deduplicated and replay-safe. */
export async function handleIngress(ex: HttpExchange, rawName: string, core: Domain): Promise<void> {
  try {
    // A malformed percent-escape (decodeURIComponent throws URIError) names no integration: 404, not 500.
    const name = decodeSegment(rawName);
    const integration = name === null ? undefined : core.integrations.get(name);
    if (!integration || name === null) throw new RelayError('notFound', `no integration named ${name ?? rawName}`);
    const auth = authenticateDelivery(integration, ex, Math.floor(core.now() / 1000));
    if (!auth.ok) {
      core.log.info({ integration: name, reason: auth.reason }, 'webhook refused');
      throw new RelayError('unauthorized', `unauthorized: ${auth.reason}`);
    }
    const replayKey = auth.replayKey;
    if (replayKey) {
      const seen = core.store.receipts.seen(name, replayKey);
      if (seen) return sendJson(ex, 200, { duplicate: true, taskId: seen.taskId });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(ex.body.toString('utf8'));
    } catch (err) {
      throw new RelayError('parseError', `parse error: body is not JSON (${(err as Error).message})`);
    }
    const illFormed = illFormedStringPath(raw);
    if (illFormed !== null) throw new RelayError('invalidParams', illFormedMessage(illFormed));
    const parsed = IngressBodySchema.safeParse(raw);
    if (!parsed.success) throw parsed.error;
    const b = parsed.data;
    const target = b.target ?? integration.target;
    if (!target) throw new RelayError('invalidParams', `invalid params: target: required (integration ${name} has no default target)`);
    const params: TaskCreateParams = {
      title: b.title,
      target,
      ...(b.body !== undefined ? { body: b.body } : {}),
      ...((b.channel ?? integration.channel) ? { channel: (b.channel ?? integration.channel)! } : {}),
      ...(b.dedupeKey ? { dedupeKey: b.dedupeKey } : {}),
      ...(b.action ? { action: b.action } : {}),
      ...(b.meta ? { meta: b.meta } : {}),
      ...((b.callbackUrl ?? integration.callbackUrl) ? { callbackUrl: (b.callbackUrl ?? integration.callbackUrl)! } : {}),
    };
    const from = `ext:${name}`;
    checkCreate(core, name, params);
    const result = await createTask(core, from, name, params, replayKey ? { integration: name, deliveryId: replayKey } : null);
    if ('duplicate' in result) return sendJson(ex, 200, { duplicate: true, taskId: result.taskId });
    sendJson(ex, result.created ? 201 : 200, { duplicate: false, task: result.task, created: result.created });
  } catch (err) {
    sendError(ex, err);
  }
}
