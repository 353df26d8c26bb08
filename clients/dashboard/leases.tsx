import { useEffect, useState } from 'preact/hooks';
import type { DashboardStore } from './store.js';

/** "in 4m 10s": the time a lease has left (the relay ends it then, unless renewed). */
function left(expiresAt: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((expiresAt - now) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** Leases in force, soonest to end first; one whose TTL passed leaves before the relay's sweep says so. */
export function LeasesPanel({ store }: { store: DashboardStore }) {
  // The countdown runs once a second while some lease is shown (this panel alone re-renders).
  const [, setTick] = useState(0);
  const any = store.leases.size > 0;
  useEffect(() => {
    if (!any) return;
    const timer = setInterval(() => setTick((n) => n + 1), 1_000);
    return () => clearInterval(timer);
  }, [any]);
  const now = Date.now();
  const leases = [...store.leases.values()].filter((l) => l.expiresAt > now).sort((a, b) => a.expiresAt - b.expiresAt || a.id - b.id);
  return (
    <section class="panel leases-panel" aria-labelledby="leases-h">
      <header>
        <h2 id="leases-h">
          Leases <span class="count">{leases.length}</span>
        </h2>
      </header>
      {leases.length === 0 ? (
        <p class="dim">No leases in force.</p>
      ) : (
        <table class="leases">
          <thead>
            <tr>
              <th>holder</th>
              <th>resources</th>
              <th>mode</th>
              <th>reason</th>
              <th>expires in</th>
            </tr>
          </thead>
          <tbody>
            {leases.map((l) => (
              <tr key={l.id} data-lease-id={l.id}>
                <td>{l.agentId}</td>
                <td>
                  {l.resources.map((r) => (
                    <code class="chip">{r}</code>
                  ))}
                </td>
                <td class={`mode ${l.mode}`}>{l.mode}</td>
                <td>{l.reason ?? ''}</td>
                <td class="time" title={`token ${l.token}`}>
                  {left(l.expiresAt, now)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
