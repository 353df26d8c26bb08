import { useState } from 'preact/hooks';
import type { Agent } from '../../protocol/common.js';
import { ago, useAction } from './hooks.js';
import type { DashboardStore } from './store.js';

function LabelEditor({ store, agent }: { store: DashboardStore; agent: Agent }) {
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState(agent.label);
  const [error, run] = useAction();
  if (!editing) {
    return (
      <button type="button" class="label" title="Edit label" aria-label={`Edit label of ${agent.id}`} onClick={() => (setValue(agent.label), setEditing(true))}>
        {agent.label} <span aria-hidden="true">✎</span>
      </button>
    );
  }
  const save = () =>
    run('label', async () => {
      if (value.trim() && value !== agent.label) await store.call('agent/update', { id: agent.id, label: value.trim() });
      setEditing(false);
    });
  return (
    <form class="inline" onSubmit={(e) => (e.preventDefault(), void save())}>
      {/* biome-ignore lint/a11y/noAutofocus: the editor opens on a click on the label, to type into at once */}
      <input aria-label={`Label of ${agent.id}`} value={value} maxLength={128} autoFocus onInput={(e) => setValue(e.currentTarget.value)} onKeyDown={(e) => e.key === 'Escape' && setEditing(false)} />
      <button type="submit">Save</button>
      {error && <span class="error">{error}</span>}
    </form>
  );
}

export function AgentsPanel({ store }: { store: DashboardStore }) {
  const [filter, setFilter] = useState({ status: '', tag: '', cap: '' });
  const agents = [...store.agents.values()]
    .filter((a) => (!filter.status || a.status === filter.status) && (!filter.tag || a.tags.includes(filter.tag)) && (!filter.cap || a.capabilities.includes(filter.cap)))
    .sort((a, b) => Number(a.status === 'offline') - Number(b.status === 'offline') || a.id.localeCompare(b.id));
  const tags = [...new Set([...store.agents.values()].flatMap((a) => a.tags))].sort();
  const caps = [...new Set([...store.agents.values()].flatMap((a) => a.capabilities))].sort();
  return (
    <section class="panel agents-panel" aria-labelledby="agents-h">
      <header>
        <h2 id="agents-h">
          Agents <span class="count">{agents.length}</span>
        </h2>
        <div class="filters">
          <select aria-label="Filter agents by status" value={filter.status} onChange={(e) => setFilter({ ...filter, status: e.currentTarget.value })}>
            <option value="">any status</option>
            {['online', 'busy', 'away', 'offline'].map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
          <select aria-label="Filter agents by tag" value={filter.tag} onChange={(e) => setFilter({ ...filter, tag: e.currentTarget.value })}>
            <option value="">any tag</option>
            {tags.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
          <select aria-label="Filter agents by capability" value={filter.cap} onChange={(e) => setFilter({ ...filter, cap: e.currentTarget.value })}>
            <option value="">any capability</option>
            {caps.map((c) => (
              <option value={c}>{c}</option>
            ))}
          </select>
        </div>
      </header>
      <ul class="agents">
        {agents.map((a) => (
          <li key={a.id} class={`agent ${a.status}`} data-agent-id={a.id}>
            <div class="line">
              <span class={`dot ${a.status}`} aria-hidden="true" />
              <strong class="id">{a.id}</strong>
              <span class="status" data-testid="agent-status">
                {a.status}
                {a.ready ? '' : ' · not ready'}
              </span>
              <span class="seen">{ago(a.lastSeenAt)}</span>
            </div>
            <div class="line">
              <LabelEditor store={store} agent={a} />
              {a.client && <span class="chip">{a.client}</span>}
              {a.tags.map((t) => (
                <span class="chip tag">#{t}</span>
              ))}
              {a.capabilities.map((c) => (
                <span class="chip cap">{c}</span>
              ))}
            </div>
            {(a.host || a.cwd) && (
              <div class="line dim">
                {a.host}
                {a.cwd ? ` · ${a.cwd}` : ''}
              </div>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}
