/**
 * Webhook ingress, `POST /api/integrations/NAME/events` (NAME captured). It authenticates with its
 * integration's own secret, never the relay or an agent token: the transport's token check and the
 * router's presented-agent-token check both step aside for it.
 */
export const INGRESS_PATH = /^\/api\/integrations\/([^/]+)\/events$/;

/** A path under one agent (`/api/agents/ID...`): the agent an X-Agent-Token speaks for when X-Agent-Id is absent. */
export const AGENT_PATH = /^\/api\/agents\/([^/]+)/;

/** A percent-encoded path segment, or null when its escapes are malformed (it names nothing: 404, not 500). */
export function decodeSegment(raw: string): string | null {
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}
