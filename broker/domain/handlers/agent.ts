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
import { requireAgent, type CallContext } from '../context.js';
import { attach } from '../attach.js';
import { checkCursor } from '../delivery.js';
import type { Domain } from '../domain.js';
import { takeOffline } from '../offline.js';
import { registered } from '../presence.js';
import { withinBudgetRead } from '../result-budget.js';
import { PLAN_AGAIN, replanning } from '../replan.js';
import type { AgentPatch, CachedAgent, EventSpec, OpOf, StoredAgent } from '../store-port.js';
import { hashToken, newToken, verifyToken } from '../tokens.js';

/** `host-client-rig-basename(cwd)-8hex`, lowercase [a-z0-9-]. */
export function generateAgentId(p: { host?: string | undefined; client?: string | undefined; rig?: string | undefined; cwd?: string | undefined }): string {
  const prefix = derivedAgentId([p.host, p.client, p.rig, p.cwd ? basename(p.cwd) : undefined], 100) || 'agent';
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function register(ctx: CallContext, p: AgentRegisterParams): Promise<AgentRegisterResult> {
  const d = ctx.domain;
  await checkCursor(d, p.since);
  const id = p.id ?? generateAgentId(p);
  // A registration over a socket binds the agent's connection to this node (a new epoch); over HTTP there is none.
  const bind = ctx.session ? { bind: { node: d.bindings.self } } : {};
  return replanning(d, { changed: `agent ${id} kept changing while it registered` }, async () => {
    const existing = d.agents.get(id);
    const now = d.now();
    let token: string;
    let op: OpOf<'agent.patch'> | OpOf<'agent.insert'>;
    if (existing) {
      if (!p.agentToken || !verifyToken(p.agentToken, existing.tokenHash)) {
        throw new RelayError('unauthorized', `unauthorized: agent ${id} exists; re-registering it needs its agentToken`);
      }
      token = p.agentToken;
      const patch: AgentPatch = {
        label: p.label,
        tags: p.tags,
        capabilities: p.capabilities,
        channels: p.channels,
        client: p.client,
        host: p.host,
        cwd: p.cwd,
        rig: p.rig,
        status: 'online',
        ready: p.ready,
        system: systemFlag(d, id, existing, p.system),
        meta: p.meta,
        lastSeenAt: now,
        offlineAt: null,
      };
      const events: EventSpec[] = existing.status === 'offline' ? [{ kind: 'agent.online', agentId: id, data: { client: p.client ?? existing.client, resumed: true } }] : [];
      op = { op: 'agent.patch' as const, at: now, id, expect: { tokenHash: existing.tokenHash, status: existing.status }, patch, events, ...bind };
    } else {
      token = newToken();
      const agent = {
        id,
        label: p.label ?? id,
        tags: p.tags ?? [],
        capabilities: p.capabilities ?? [],
        channels: p.channels ?? [],
        client: p.client ?? null,
        host: p.host ?? null,
        cwd: p.cwd ?? null,
        rig: p.rig ?? null,
        status: 'online' as const,
        ready: p.ready ?? true,
        system: systemFlag(d, id, undefined, p.system),
        tokenHash: hashToken(token),
        registeredAt: now,
        lastSeenAt: now,
        offlineAt: null,
        meta: p.meta ?? {},
      };
      op = {
        op: 'agent.insert' as const,
        at: now,
        agent,
        maxAgents: d.config.maxAgents,
        events: [{ kind: 'agent.online' as const, agentId: id, data: { client: agent.client, resumed: false } }],
        ...bind,
      };
    }
    const done = await d.queue.apply(op, (o) => {
      if (!o.ok) {
        if (o.refused === 'full') {
          throw new RelayError(
            'tooLarge',
            `too large: the registry holds ${o.count} agents, its limit (AGENT_RELAY_MAX_AGENTS=${d.config.maxAgents}); re-register an existing id with its agentToken, or wait for offline agents to be pruned`,
          );
        }
        return null; // the agent changed (or appeared) meanwhile: plan again
      }
      const { agent, newestMessageId: cursor } = o.value;
      // The session is bound now; its backlog (through this commit, or further if more is published
      // already) is read after, and what is published from here on is pushed live.
      const attached = ctx.session ? attach(d, ctx.session, { agentId: id, ...(p.since !== undefined ? { since: p.since } : {}), topics: [] }, cursor) : null;
      if (ctx.session && o.value.session) registered(d, ctx.session, id, o.value.session.epoch);
      return { result: { agent: d.agents.wire(agent), agentToken: token, cursor, created: !existing }, attached };
    });
    if (!done) {
      // An id refused as taken that this node does not know registered on another node a moment ago.
      if (!existing) await d.agents.lookup(id);
      return PLAN_AGAIN;
    }
    // The missed messages are pushed before the answer, which names the point they reach.
    const through = await done.attached;
    return through ? { ...done.result, cursor: through.cursor } : done.result;
  });
}

/**
 * System agents are never pruned, so the flag is the operator's: an id listed in
 * AGENT_RELAY_SYSTEM_AGENTS, or a row already stored as system (kept, never demoted over the wire).
 */
function systemFlag(d: Domain, id: string, existing: CachedAgent | undefined, asked: boolean | undefined): boolean {
  const system = Boolean(existing?.system) || d.config.systemAgents.includes(id);
  if (asked === true && !system) {
    throw new RelayError('unauthorized', `unauthorized: system: agent ${id} is not a system agent; the operator lists system agents in AGENT_RELAY_SYSTEM_AGENTS (register without system)`);
  }
  return system;
}

/** What a caller other than the agent itself may change: the label (the dashboard edits it). */
const OBSERVER_FIELDS = new Set(['id', 'label', 'agentId', 'agentToken']);

export async function update(ctx: CallContext, p: AgentUpdateParams): Promise<AgentUpdateResult> {
  const d = ctx.domain;
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
  return replanning(d, { changed: `agent ${id} kept changing while it was updated` }, async () => {
    const existing = await d.agents.lookup(id);
    if (!existing) throw new RelayError('notFound', `id: no agent ${id}`);
    const now = d.now();
    const patch: AgentPatch = {
      label: p.label,
      tags: p.tags,
      capabilities: p.capabilities,
      channels: p.channels,
      status: p.status,
      ready: p.ready,
      meta: p.meta,
      ...(self ? { lastSeenAt: now } : {}),
    };
    let agent: StoredAgent | null;
    if (p.status === 'offline' && existing.status !== 'offline') {
      agent = await takeOffline(d, id, patch, 'left');
    } else {
      const events: EventSpec[] = [];
      if (existing.status === 'offline' && (p.status ?? existing.status) !== 'offline') {
        patch.offlineAt = null;
        events.push({ kind: 'agent.online', agentId: id, data: { client: existing.client, resumed: true } });
      }
      const op = { op: 'agent.patch' as const, at: now, id, expect: { tokenHash: existing.tokenHash, status: existing.status }, patch, events };
      agent = await d.queue.apply(op, (o) => (o.ok ? o.value.agent : null));
    }
    return agent ? { agent: d.agents.wire(agent) } : PLAN_AGAIN;
  });
}

export async function heartbeat(ctx: CallContext, p: AgentHeartbeatParams): Promise<AgentHeartbeatResult> {
  const id = requireAgent(ctx);
  return update({ ...ctx, agentId: id }, { id, status: p.status ?? onlineIfOffline(ctx.domain, id), ready: p.ready });
}

function onlineIfOffline(d: Domain, id: string): 'online' | undefined {
  // A heartbeat from an agent the sweep marked offline brings it back.
  return d.agents.get(id)?.status === 'offline' ? 'online' : undefined;
}

/** One page of agents in id order (code-point order, so `after` is exact), bounded by count and size. */
export async function list({ domain: d }: CallContext, p: AgentListParams): Promise<AgentListResult> {
  const matching: CachedAgent[] = [];
  for (const a of d.agents.values()) {
    if (p.after !== undefined && a.id <= p.after) continue;
    if (p.status && a.status !== p.status) continue;
    if (p.tag && !a.tags.includes(p.tag)) continue;
    if (p.capability && !a.capabilities.includes(p.capability)) continue;
    matching.push(a);
  }
  matching.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const limit = p.limit ?? LIMITS.defaultListLimit;
  // Meta comes from the store, for the page only: the cache does not hold it.
  const page = await withinBudgetRead(matching.slice(0, limit), LIMITS.maxResultBytes, async (a) => d.agents.wire(await d.agents.withMeta(a)));
  const more = page.cut || matching.length > limit;
  return more ? { agents: page.records, nextCursor: page.records.at(-1)!.id } : { agents: page.records };
}
