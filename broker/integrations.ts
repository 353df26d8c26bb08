import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ChannelSchema, TargetSchema } from '../protocol/index.js';
import { ConfigError } from './config.js';

export const IntegrationSchema = z.strictObject({
  /** URL segment: POST /api/integrations/NAME/events; also the task source. */
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, 'must be lowercase [a-z0-9_-], at most 64 characters'),
  /** Standard Webhooks secret (`whsec_` + base64), also accepted as a bearer token and as the GitHub secret. */
  secret: z.string().min(16, 'must be at least 16 characters'),
  /** Target for events that do not name one. */
  target: TargetSchema.optional(),
  channel: ChannelSchema.optional(),
  /** Where this integration's task lifecycle callbacks go. */
  callbackUrl: z.url({ protocol: /^https?$/ }).optional(),
  /**
   * Signs this integration's callbacks instead of `secret`, so a callback can never pass as an
   * ingress delivery and a leak of one secret does not give away the other. Absent: `secret` signs.
   */
  callbackSecret: z.string().min(16, 'must be at least 16 characters').optional(),
});

export type Integration = z.infer<typeof IntegrationSchema>;

const FileSchema = z.strictObject({ integrations: z.array(IntegrationSchema) });

/** Load the integrations file; a bad file stops start-up naming the file and the field. */
export function loadIntegrations(path: string | undefined): Map<string, Integration> {
  const out = new Map<string, Integration>();
  if (!path) return out;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`AGENT_RELAY_INTEGRATIONS=${path}: cannot read JSON (${(err as Error).message})`);
  }
  const parsed = FileSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new ConfigError(`AGENT_RELAY_INTEGRATIONS=${path}: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  for (const integration of parsed.data.integrations) {
    if (out.has(integration.name)) throw new ConfigError(`AGENT_RELAY_INTEGRATIONS=${path}: integration "${integration.name}" is defined twice`);
    out.set(integration.name, integration);
  }
  return out;
}
