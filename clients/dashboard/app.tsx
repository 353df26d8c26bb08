import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { Message } from '../../protocol/common.js';
import { AgentsPanel } from './agents.js';
import { useStore } from './hooks.js';
import { LeasesPanel } from './leases.js';
import { MessagesPanel, ThreadView } from './messages.js';
import { DashboardStore } from './store.js';
import { Approvals, TaskBoard, TaskDetails } from './tasks.js';

const TOKEN_KEY = 'agent-relay.token';

function StatusBadge({ store }: { store: DashboardStore }) {
  const text = { connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…', closed: 'disconnected' }[store.state];
  return (
    <span class={`conn ${store.state}`} role="status" aria-live="polite" data-state={store.state} title={store.lastError}>
      {text}
    </span>
  );
}

function Dashboard({ store }: { store: DashboardStore }) {
  useStore(store);
  // "12s ago" labels age even when nothing arrives.
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((n) => n + 1), 10_000);
    return () => clearInterval(timer);
  }, []);
  const [thread, setThread] = useState<Message | null>(null);
  const [taskId, setTaskId] = useState<number | null>(null);
  return (
    <>
      <header class="top">
        <h1>Agent Relay</h1>
        <StatusBadge store={store} />
      </header>
      <main class="grid">
        <Approvals store={store} />
        <AgentsPanel store={store} />
        <MessagesPanel store={store} onOpen={(m) => (setTaskId(null), setThread(m))} />
        <TaskBoard store={store} onOpen={(id) => (setThread(null), setTaskId(id))} />
        <LeasesPanel store={store} />
      </main>
      {thread && <ThreadView store={store} root={thread} onClose={() => setThread(null)} />}
      {taskId !== null && <TaskDetails store={store} id={taskId} onClose={() => setTaskId(null)} />}
    </>
  );
}

/** Asks for the relay token once when the relay wants one; kept for this tab only. */
function TokenGate({ onToken, failed }: { onToken: (t: string) => void; failed: boolean }) {
  const [value, setValue] = useState('');
  return (
    <form class="gate" onSubmit={(e) => (e.preventDefault(), onToken(value.trim()))}>
      <h1>Agent Relay</h1>
      <p>{failed ? 'That token was refused.' : 'This relay needs its token (AGENT_RELAY_TOKEN).'}</p>
      {/* biome-ignore lint/a11y/noAutofocus: the token box is all the page shows until a token is given */}
      <input type="password" aria-label="Relay token" autoFocus value={value} onInput={(e) => setValue(e.currentTarget.value)} />
      <button type="submit">Connect</button>
    </form>
  );
}

function App() {
  const [token, setToken] = useState<string | null>(sessionStorage.getItem(TOKEN_KEY));
  const [phase, setPhase] = useState<'checking' | 'needs-token' | 'refused' | 'ready'>('checking');
  const [store, setStore] = useState<DashboardStore | null>(null);
  // Bumped on every submit: the same (wrong) token submitted twice must be checked again, not hang on "checking".
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let cancelled = false;
    void (async () => {
      // The WebSocket cannot tell a refused token from a dead relay: ask over HTTP first.
      const res = await fetch('/healthz', { headers: token ? { authorization: `Bearer ${token}` } : {} }).catch(() => null);
      if (cancelled) return;
      if (res?.status === 401) return setPhase(token ? 'refused' : 'needs-token');
      const s = new DashboardStore(location.origin, token ?? undefined);
      setStore(s);
      setPhase('ready');
      await s.start().catch(() => undefined);
    })();
    return () => {
      cancelled = true;
    };
  }, [token, attempt]);
  if (phase === 'needs-token' || phase === 'refused') {
    return (
      <TokenGate
        failed={phase === 'refused'}
        onToken={(t) => {
          sessionStorage.setItem(TOKEN_KEY, t);
          setPhase('checking');
          setToken(t);
          setAttempt((n) => n + 1);
        }}
      />
    );
  }
  return store ? <Dashboard store={store} /> : <p class="loading">connecting…</p>;
}

render(<App />, document.getElementById('app')!);
