import { AGENT_PATH, decodeSegment, INGRESS_PATH, RelayError } from '../../protocol/index.js';
import type { AgentDirectory } from '../domain/agent-directory.js';
import type { Caller, HttpExchange } from '../domain/ports.js';
import { safeEqual } from '../domain/tokens.js';
import { verifyGithubSignature, verifyStandardWebhook, type VerifyResult } from '../domain/webhooks.js';
import type { Integration } from '../integrations.js';
import type { Logger } from '../logger.js';

/**
 * Turns what a request carries into its caller, once, before any route runs: an agent token (with
 * the agent it names), an integration's webhook signature, or nothing (an observer). The relay
 * token, Host and Origin are checked before this (auth.ts); what the caller may do is the method
 * table's and the handlers' business. Nothing after this authenticates.
 */
export class Credentials {
  constructor(
    private readonly agents: AgentDirectory,
    private readonly integrations: ReadonlyMap<string, Integration>,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** An agent credential (headers): the agent id, or -32001. */
  agent(agentId: string | undefined, agentToken: string): Promise<string> {
    return this.agents.authenticate(agentId, agentToken);
  }

  /**
   * The caller of an HTTP request. A presented agent credential is checked on every route, even
   * where the route needs no identity (public reads, health, the dashboard): a wrong or another
   * agent's X-Agent-Token is refused with 401, never served as if absent. The agent is the one
   * X-Agent-Id names, else the /api/agents/:id path, else the agentId query parameter. X-Agent-Id
   * without X-Agent-Token, and a token that names no agent, are 401 too. Webhook ingress
   * authenticates with its integration's secret instead (404 for an unknown integration).
   */
  async http(ex: HttpExchange): Promise<Caller> {
    const ingress = INGRESS_PATH.exec(ex.path);
    if (ingress) return { session: null, agentId: null, transport: 'http', integration: this.delivery(ex, ingress[1]!) };
    const token = ex.headers['x-agent-token'];
    const headerId = ex.headers['x-agent-id'];
    // An id without its token used to be served as ext:observer: a half identity is refused, never dropped.
    if (headerId !== undefined && token === undefined) {
      throw new RelayError(
        'unauthorized',
        `unauthorized: X-Agent-Id names agent ${headerId.slice(0, 128)} but X-Agent-Token is missing: send both to act as the agent, or neither to act as an observer`,
      );
    }
    if (token === undefined) return { session: null, agentId: null, transport: 'http' };
    const fromPath = AGENT_PATH.exec(ex.path)?.[1];
    const named = headerId ?? (fromPath !== undefined ? (decodeSegment(fromPath) ?? undefined) : undefined) ?? ex.query.get('agentId') ?? undefined;
    if (named === undefined) {
      throw new RelayError('unauthorized', `unauthorized: X-Agent-Token is given but X-Agent-Id is missing: ${ex.method} ${ex.path} does not name the agent, so add X-Agent-Id`);
    }
    return { session: null, agentId: await this.agent(named, token), transport: 'http' };
  }

  /** A webhook delivery, verified over the raw body before any parse or write. */
  private delivery(ex: HttpExchange, rawName: string): { name: string; replayKey: string | null } {
    // A malformed percent-escape (decodeURIComponent throws URIError) names no integration: 404, not 500.
    const name = decodeSegment(rawName);
    const integration = name === null ? undefined : this.integrations.get(name);
    if (!integration || name === null) throw new RelayError('notFound', `no integration named ${name ?? rawName}`);
    const auth = authenticateDelivery(integration, ex, Math.floor(this.now() / 1000));
    if (!auth.ok) {
      this.log.info({ integration: name, reason: auth.reason }, 'webhook refused');
      throw new RelayError('unauthorized', `unauthorized: ${auth.reason}`);
    }
    return { name, replayKey: auth.replayKey ?? null };
  }
}

/**
 * Authenticate a delivery over the raw body: a bearer secret, a Standard Webhooks signature
 * (5-minute tolerance), or a GitHub X-Hub-Signature-256. Returns the replay key (webhook-id /
 * X-GitHub-Delivery) when the scheme has one.
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
