import { z } from 'zod';
import { ChannelSchema, MetaSchema, RelayError, TargetSchema, type TaskCreateParams } from '../../protocol/index.js';
import { illFormedMessage, illFormedStringPath } from '../../protocol/well-formed.js';
import type { Caller, HttpExchange, RelayEdge } from '../../broker/domain/ports.js';
import { sendError, sendJson } from './respond.js';

/** What an integration may send; fields map onto task/create. Unknown fields are ignored. */
export const IngressBodySchema = z.object({
  title: z.string().min(1).max(512),
  target: TargetSchema.optional(),
  channel: ChannelSchema.optional(),
  body: z
    .string()
    .max(256 * 1024)
    .optional(),
  dedupeKey: z.string().min(1).max(256).optional(),
  action: z.enum(['trigger', 'resolve']).optional(),
  meta: MetaSchema.optional(),
  callbackUrl: z
    .url({ protocol: /^https?$/ })
    .max(2048)
    .optional(),
});

/** POST /api/integrations/:name/events → task/create with source = name, deduplicated and replay-safe. */
export async function handleIngress(ex: HttpExchange, caller: Caller, relay: RelayEdge): Promise<void> {
  try {
    // The transport verified the delivery with its integration's secret (Credentials), before this runs.
    const delivery = caller.integration;
    const integration = delivery ? relay.integration(delivery.name) : undefined;
    if (!delivery || !integration) throw new RelayError('unauthorized', 'unauthorized: a webhook delivery needs its integration’s credentials');
    const name = delivery.name;
    if (delivery.replayKey) {
      const seen = await relay.receiptSeen(name, delivery.replayKey);
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
    const result = await relay.ingest(caller, params);
    if ('duplicate' in result) return sendJson(ex, 200, { duplicate: true, taskId: result.taskId });
    sendJson(ex, result.created ? 201 : 200, { duplicate: false, task: result.task, created: result.created });
  } catch (err) {
    sendError(ex, err);
  }
}
