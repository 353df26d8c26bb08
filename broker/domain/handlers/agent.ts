import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import {
  derivedAgentId,
  LIMITS,
  RelayError,
  type AgentHeartbeatParams,
  type AgentHeartbeatResult,
  type AgentListParams,
  type AgentListResult,
  type AgentRegisterParams,
  type AgentRegisterResult,
  type AgentUpdateParams,
  type AgentUpdateResult,
} from '../../../protocol/index.js';
import type { CachedAgent, StoredAgent } from '../../store/agents.js';
import type { CallContext } from '../context.js';
import type { RelayCore } from '../core.js';
import { withinBudget } from '../result-budget.js';
import { hashToken, newToken, verifyToken } from '../tokens.js';

/** `host-client-rig-basename(cwd)-8hex`, lowercase [a-z0-9-]. */
export function generateAgentId(p: { host?: string | undefined; client?: string | undefined; rig?: string | undefined; cwd?: string | undefined }): string {
  const prefix = derivedAgentId([p.host, p.client, p.rig, p.cwd ? basename(p.cwd) : undefined], 100) || 'agent';
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function register(core: RelayCore, ctx: CallContext, p: AgentRegisterParams): Promise<AgentRegisterResult> {
  core.checkCursor(p.since);
  const id = p.id ?? generateAgentId(p);
  const { agent, token, cursor, created } = await core.queue.submit((onCommit) => {
    const now = core.now();
    const existing = core.agentInTx(id);
    let token: string;
    if (existing) {
      if (!p.agentToken || !verifyToken(p.agentToken, existing.tokenHash)) {
        throw new RelayError('unauthorized', `unauthorized: agent ${id} exists; re-registering it needs its agentToken`);
      }
      token = p.agentToken;
    } else {
      const count = core.store.agents.count();
      if (count >= core.config.maxAgents) {
        throw new RelayError('tooLarge', `too large: the registry holds ${count} agents, its limit (AGENT_RELAY_MAX_AGENTS=${core.config.maxAgents}); re-register an existing id with its agentToken, or wait for offline agents to be pruned`);
      }
      token = newToken();
    }
    const agent: StoredAgent = {
      id,
      label: p.label ?? existing?.label ?? id,
      tags: p.tags ?? existing?.tags ?? [],
      capabilities: p.capabilities ?? existing?.capabilities ?? [],
      channels: p.channels ?? existing?.channels ?? [],
      client: p.client ?? existing?.client ?? null,
      host: p.host ?? existing?.host ?? null,
      cwd: p.cwd ?? existing?.cwd ?? null,
      rig: p.rig ?? existing?.rig ?? null,
      status: 'online',
      ready: p.ready ?? existing?.ready ?? true,
      system: systemFlag(core, id, existing, p.system),
      tokenHash: existing?.tokenHash ?? hashToken(token),
      registeredAt: existing?.registeredAt ?? now,
      lastSeenAt: now,
      offlineAt: null,
      meta: p.meta ?? existing?.meta ?? {},
      inboxFloor: existing?.inboxFloor ?? core.store.messages.maxId(),
    };
    core.saveAgent(onCommit, agent);
    if (!existing || existing.status === 'offline') {
      const event = core.appendEvent('agent.online', null, id, { client: agent.client, resumed: Boolean(existing) });
      onCommit(() => core.notifier.eventNew(event));
    }
    // Messages committed after this point are pushed live by their own hooks; the backlog stops here.
    const cursor = core.store.messages.maxId();
    onCommit(() => {
      const session = ctx.session;
      if (!session || !core.sessions.attach(session, id)) return;
      core.notifier.pushes.attached(id, session, p.since ?? cursor);
      if (p.since !== undefined) core.replayBacklog(session, id, p.since, cursor);
    });
    return { agent, token, cursor, created: !existing };
  });
  return { agent: core.wireAgent(agent), agentToken: token, cursor, created };
}

/**
 * System agents are never pruned, so the flag is the operator's: an id listed in
 * AGENT_RELAY_SYSTEM_AGENTS, or a row already stored as system (kept, never demoted over the wire).
 */
function systemFlag(core: RelayCore, id: string, existing: StoredAgent | undefined, asked: boolean | undefined): boolean {
  const system = Boolean(existing?.system) || core.config.systemAgents.includes(id);
  if (asked === true && !system) {
    throw new RelayError('unauthorized', `unauthorized: system: agent ${id} is not a system agent; the operator lists system agents in AGENT_RELAY_SYSTEM_AGENTS (register without system)`);
  }
  return system;
}

/** What a caller other than the agent itself may change: the label (the dashboard edits it). */
const OBSERVER_FIELDS = new Set(['id', 'label', 'agentId', 'agentToken']);

export async function update(core: RelayCore, ctx: CallContext, p: AgentUpdateParams): Promise<AgentUpdateResult> {
  const id = p.id ?? ctx.agentId;
  if (!id) throw new RelayError('notRegistered', 'not registered: pass id to update another agent, or register first');
  const self = ctx.agentId === id;
  if (!self && ctx.agentId) throw new RelayError('unauthorized', `unauthorized: agent ${ctx.agentId} cannot update agent ${id}`);
  // Routing fields, meta, status and readiness are the agent's own: without its token an observer
  // could reroute it (empty tags and tag:review stops reaching it) with more power than an agent has.
  const reserved = Object.keys(p).filter((k) => !OBSERVER_FIELDS.has(k) && p[k as keyof AgentUpdateParams] !== undefined);
  if (!self && reserved.length > 0) {
    throw new RelayError('unauthorized', `unauthorized: ${reserved.join(', ')} of agent ${id} change only with its own agentToken (X-Agent-Token over HTTP); an observer may change only its label`);
  }
  const agent = await core.queue.submit((onCommit) => {
    const existing = core.agentInTx(id);
    if (!existing) throw new RelayError('notFound', `id: no agent ${id}`);
    const goingOffline = p.status === 'offline' && existing.status !== 'offline';
    const next: StoredAgent = {
      ...existing,
      label: p.label ?? existing.label,
      tags: p.tags ?? existing.tags,
      capabilities: p.capabilities ?? existing.capabilities,
      channels: p.channels ?? existing.channels,
      status: p.status ?? existing.status,
      ready: p.ready ?? existing.ready,
      meta: p.meta ?? existing.meta,
      lastSeenAt: self ? core.now() : existing.lastSeenAt,
    };
    if (goingOffline) return core.markOffline(onCommit, next, 'left');
    if (existing.status === 'offline' && next.status !== 'offline') {
      next.offlineAt = null;
      const event = core.appendEvent('agent.online', null, id, { client: next.client, resumed: true });
      onCommit(() => core.notifier.eventNew(event));
    }
    core.saveAgent(onCommit, next);
    return next;
  });
  return { agent: core.wireAgent(agent) };
}

export async function heartbeat(core: RelayCore, ctx: CallContext, p: AgentHeartbeatParams): Promise<AgentHeartbeatResult> {
  const id = core.requireAgent(ctx);
  return update(core, { ...ctx, agentId: id }, { id, status: p.status ?? onlineIfOffline(core, id), ready: p.ready });
}

function onlineIfOffline(core: RelayCore, id: string): 'online' | undefined {
  // A heartbeat from an agent the sweep marked offline brings it back.
  return core.agents.get(id)?.status === 'offline' ? 'online' : undefined;
}

/** One page of agents in id order (code-point order, so `after` is exact), bounded by count and size. */
export function list(core: RelayCore, _ctx: CallContext, p: AgentListParams): AgentListResult {
  const matching: CachedAgent[] = [];
  for (const a of core.agents.values()) {
    if (p.after !== undefined && a.id <= p.after) continue;
    if (p.status && a.status !== p.status) continue;
    if (p.tag && !a.tags.includes(p.tag)) continue;
    if (p.capability && !a.capabilities.includes(p.capability)) continue;
    matching.push(a);
  }
  matching.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const limit = p.limit ?? LIMITS.defaultListLimit;
  // Meta comes from the store, for the page only: the cache does not hold it.
  const page = withinBudget(matching.slice(0, limit), LIMITS.maxResultBytes, (a) => core.wireAgent({ ...a, meta: core.store.agents.metaOf(a.id) }));
  const more = page.cut || matching.length > limit;
  return more ? { agents: page.records, nextCursor: page.records.at(-1)!.id } : { agents: page.records };
}
