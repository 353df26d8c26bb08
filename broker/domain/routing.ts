import type { Warning } from '../../protocol/index.js';
import type { AgentPatch, CachedAgent, WriteOp } from './store-port.js';

export interface Route {
  recipients: string[];
  warnings: Warning[];
}

export class UnknownAgentError extends Error {}

/** A target whose recipients depend on the agents' tags, capabilities, labels and status (not one id). */
export function isFanOut(target: string): boolean {
  return target === 'broadcast' || target.startsWith('tag:') || target.startsWith('cap:') || target.startsWith('label:');
}

/** A target naming one agent: neither a fan-out form nor an external sender (resolveTarget's third case). */
export function isAgentId(target: string): boolean {
  return !isFanOut(target) && !target.startsWith('ext:');
}

/** The agent fields resolveTarget reads to choose fan-out recipients (matcher, channel filter, offline). */
const ROUTED_FIELDS = ['label', 'tags', 'capabilities', 'channels', 'status'] as const satisfies readonly (keyof AgentPatch)[];

/**
 * Whether `op`, if applied, can change who a fan-out target reaches: a new agent, one going
 * offline, or a change of a field resolveTarget reads. Heartbeats cannot, nor can a prune (it
 * removes offline agents, whom fan-out skips). A store with a change feed records where the last
 * such op committed, so an op routed from an older copy of the agents is refused (RoutedAt).
 */
export function changesRouting(op: WriteOp): boolean {
  switch (op.op) {
    case 'agent.insert':
    case 'agent.offline':
      return true;
    case 'agent.patch':
      return ROUTED_FIELDS.some((field) => op.patch[field] !== undefined);
    default:
      return false;
  }
}

/**
 * Resolve a target to recipient ids over a snapshot of agents. Fan-out forms reach agents that
 * are not offline, skip agents whose channel list excludes the message's channel, and never
 * include the sender. A direct id always gets the message, even while offline.
 */
export function resolveTarget(target: string, channel: string | null, senderId: string, agents: ReadonlyMap<string, CachedAgent>): Route {
  let recipients: string[];
  if (isFanOut(target)) {
    const match = matcher(target);
    recipients = [];
    for (const a of agents.values()) {
      if (a.id === senderId || a.status === 'offline' || !match(a)) continue;
      if (channel !== null && a.channels.length > 0 && !a.channels.includes(channel)) continue;
      recipients.push(a.id);
    }
  } else if (target.startsWith('ext:')) {
    // An external sender (the dashboard, a script) holds no inbox: a reply to it is kept in its
    // thread and reaches observers of the message stream, and no agent.
    return { recipients: [], warnings: [] };
  } else {
    if (!agents.has(target)) throw new UnknownAgentError(`to: no agent with id ${target}`);
    recipients = [target];
  }
  const warnings: Warning[] = [];
  if (recipients.length === 0) warnings.push({ agentId: '', reason: 'no_recipients' });
  for (const id of recipients) {
    const a = agents.get(id)!;
    if (a.status === 'offline') warnings.push({ agentId: id, reason: 'offline' });
    else if (!a.ready) warnings.push({ agentId: id, reason: 'not_ready' });
  }
  return { recipients, warnings };
}

function matcher(target: string): (a: CachedAgent) => boolean {
  if (target === 'broadcast') return () => true;
  const colon = target.indexOf(':');
  const kind = target.slice(0, colon);
  const name = target.slice(colon + 1);
  if (kind === 'tag') return (a) => a.tags.includes(name);
  if (kind === 'cap') return (a) => a.capabilities.includes(name);
  const lower = name.toLowerCase();
  return (a) => a.label.toLowerCase() === lower;
}
