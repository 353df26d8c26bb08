import type { Test } from 'tap';
import { AppServerConnection, type ServerRequest } from '../../adapters/codex/app-server.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A second client of an app-server (real or fake), as a person's TUI or IDE would be: what it
 * was asked and told, for tests of what happens beside the adapter.
 */
export interface AppServerClient {
  conn: AppServerConnection;
  requests: ServerRequest[];
  notifications: Array<{ method: string; params: Record<string, any> }>;
  /** Notifications of `method`, params only. */
  of(method: string): Array<Record<string, any>>;
  until(cond: () => boolean, what: string, timeoutMs?: number): Promise<void>;
}

/** Connect and handshake; closed at teardown. */
export async function appServerClient(t: Test, url: string): Promise<AppServerClient> {
  const conn = await AppServerConnection.connect(url);
  t.teardown(() => conn.close());
  const requests: ServerRequest[] = [];
  const notifications: AppServerClient['notifications'] = [];
  conn.on('request', (r) => requests.push(r));
  conn.on('notification', (method, params) => notifications.push({ method, params }));
  await conn.handshake('0.0.1');
  return {
    conn,
    requests,
    notifications,
    of: (method) => notifications.filter((n) => n.method === method).map((n) => n.params),
    until: (cond, what, timeoutMs = 15_000) => waitFor(cond, what, timeoutMs),
  };
}
