import { listAllAgents } from '../pages.js';
import { RelayClient } from '../relay-client.js';
import type { Agent, Lease, Message, RelayEvent, Task } from '../../protocol/common.js';
import type { MethodName, MethodParams, MethodResult } from '../../protocol/method-table.js';

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'closed';

/** Messages kept in the browser; older ones are still a thread click away on the relay. */
const MAX_MESSAGES = 20_000;
const MAX_EVENTS = 2_000;
const HISTORY = 500;
const OPERATOR_KEY = 'agent-relay.operator';

/**
 * Everything the page shows, fed by one observer connection (messages, tasks, agents, leases, events)
 * and refreshed from the relay after every reconnect. Views subscribe and re-render on change.
 */
export class DashboardStore {
  readonly agents = new Map<string, Agent>();
  readonly tasks = new Map<number, Task>();
  /** Leases in force, by id: an ended one is dropped when its push arrives. */
  readonly leases = new Map<number, Lease>();
  messages: Message[] = [];
  events: RelayEvent[] = [];
  state: ConnectionState = 'connecting';
  lastError = '';
  private readonly listeners = new Set<() => void>();
  private scheduled = false;
  private historyLoaded = false;
  readonly observer: RelayClient;
  private operator: RelayClient | null = null;

  constructor(
    private readonly url: string,
    private readonly token: string | undefined,
  ) {
    this.observer = new RelayClient({ url, ...(token ? { token } : {}), observe: ['messages', 'tasks', 'agents', 'leases', 'events'], waitForRelay: true, reconnect: { initialMs: 300, maxMs: 5000 } });
    this.observer.on('message', (m) => {
      this.messages.push(m);
      if (this.messages.length > MAX_MESSAGES) this.messages.splice(0, this.messages.length - MAX_MESSAGES);
      this.changed();
    });
    this.observer.on('task', ({ task }) => {
      this.tasks.set(task.id, task);
      this.changed();
    });
    this.observer.on('lease', ({ lease }) => {
      if (lease.releasedAt === null) this.leases.set(lease.id, lease);
      else this.leases.delete(lease.id);
      this.changed();
    });
    this.observer.on('agent', (a) => {
      // Pushes leave meta out; keep the last listed one.
      this.agents.set(a.id, { ...a, meta: this.agents.get(a.id)?.meta ?? {} });
      this.changed();
    });
    this.observer.on('event', (e) => {
      this.events.push(e);
      if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
      this.changed();
    });
    this.observer.on('ready', () => {
      this.state = 'live';
      this.lastError = '';
      // Shown at once, not when the reads below are answered (they may take a while on a busy relay).
      this.changed();
      // Agent and task changes are not replayed by cursor: read their current state instead.
      void this.refresh();
    });
    this.observer.on('disconnected', (d) => {
      this.state = d.willReconnect ? 'reconnecting' : 'closed';
      this.lastError = d.reason;
      this.changed();
    });
  }

  async start(): Promise<void> {
    await this.observer.connect();
  }

  private async refresh(): Promise<void> {
    try {
      const [agents, tasks, leases] = await Promise.all([
        listAllAgents((p) => this.observer.call('agent/list', p)),
        this.observer.call('task/list', { limit: 500 }),
        this.observer.call('lease/list', { limit: 500 }),
      ]);
      this.agents.clear();
      for (const a of agents) this.agents.set(a.id, a);
      for (const t of tasks.tasks) this.tasks.set(t.id, t);
      this.leases.clear();
      for (const l of leases.leases) this.leases.set(l.id, l);
      if (!this.historyLoaded) {
        // Ids are one global sequence: the last HISTORY of them are the recent past.
        const recent = await this.observer.call('message/list', { since: Math.max(0, this.observer.cursor - HISTORY), limit: HISTORY });
        const seen = new Set(this.messages.map((m) => m.id));
        this.messages = [...recent.messages.filter((m) => !seen.has(m.id)), ...this.messages].sort((a, b) => a.id - b.id);
        this.historyLoaded = true;
      }
    } catch (err) {
      this.lastError = (err as Error).message;
    }
    this.changed();
  }

  /** Calls any observer may make (send as ext:, edit labels, cancel, read). */
  call<M extends MethodName>(method: M, params: MethodParams<M>): Promise<MethodResult<M>> {
    return this.observer.call(method, params);
  }

  /**
   * Claims need an owner that stays online: this tab's own operator agent, kept for the tab's
   * life (sessionStorage survives a reload, so the page keeps owning what it claimed).
   */
  async asOperator(): Promise<RelayClient> {
    if (this.operator) return this.operator;
    const saved = JSON.parse(sessionStorage.getItem(OPERATOR_KEY) ?? 'null') as { id: string; token: string } | null;
    const id = saved?.id ?? `operator-${Math.random().toString(36).slice(2, 8)}`;
    const client = new RelayClient({
      url: this.url,
      ...(this.token ? { token: this.token } : {}),
      agent: { id, label: 'dashboard operator', tags: ['human', 'dashboard'], client: 'dashboard' },
      ...(saved ? { agentToken: saved.token } : {}),
      reconnect: { initialMs: 300, maxMs: 5000 },
    });
    await client.connect();
    sessionStorage.setItem(OPERATOR_KEY, JSON.stringify({ id, token: client.agentToken }));
    this.operator = client;
    return client;
  }

  /** This tab's operator agent id, once it has one. */
  operatorId(): string | null {
    if (this.operator?.agent) return this.operator.agent.id;
    return (JSON.parse(sessionStorage.getItem(OPERATOR_KEY) ?? 'null') as { id: string } | null)?.id ?? null;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Coalesce bursts into one render per animation frame. */
  changed(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const l of this.listeners) l();
    });
  }
}
