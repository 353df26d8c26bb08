import { useEffect, useState } from 'preact/hooks';
import type { DashboardStore } from './store.js';

/** Re-render when the store changes (at most once per animation frame). */
export function useStore(store: DashboardStore): number {
  const [version, setVersion] = useState(0);
  useEffect(() => store.subscribe(() => setVersion((v) => v + 1)), [store]);
  return version;
}

/** Run an action, keeping its error for display instead of losing it in the console. */
export function useAction(): [string, (label: string, action: () => Promise<unknown>) => Promise<void>] {
  const [error, setError] = useState('');
  const run = async (label: string, action: () => Promise<unknown>) => {
    setError('');
    try {
      await action();
    } catch (err) {
      setError(`${label}: ${(err as Error).message}`);
    }
  };
  return [error, run];
}

export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}
