import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { startFakeModel, startRealAppServer, type FakeModel, type RealAppServer } from './harness.js';

/**
 * The real app-server alone, for clients of a test's own (no relay, no adapter): the fake model,
 * the app-server with config `on-request` (threads ask for "untrusted" on thread/start), and a
 * project directory for the threads' cwd.
 */
export async function realAppServerAlone(t: Test): Promise<{ model: FakeModel; app: RealAppServer; cwd: string }> {
  const model = await startFakeModel(t);
  const app = await startRealAppServer(t, model, { approvalPolicy: 'on-request' });
  const cwd = join(app.codexHome, '..', 'proj'); // not t.testdir(): a second call empties the dir
  mkdirSync(cwd, { recursive: true });
  return { model, app, cwd };
}
