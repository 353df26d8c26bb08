/**
 * Agent ids derived from names (host, client, rig, a directory's name). Pure: the broker's
 * generated ids and the Claude and Codex adapters' ids all follow this one rule, so every derived
 * id passes AgentIdSchema.
 */

/** Lowercase; each run of characters outside [a-z0-9] becomes one dash; no dash at either end. */
export function agentIdSlug(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

/** The non-empty slugs of `parts` joined by dashes, cut to `max` characters (AgentIdSchema's 128 by default). */
export function derivedAgentId(parts: readonly (string | undefined)[], max = 128): string {
  return parts
    .map((p) => agentIdSlug(p ?? ''))
    .filter(Boolean)
    .join('-')
    .slice(0, max);
}
