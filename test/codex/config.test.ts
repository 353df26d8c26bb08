import t from 'tap';
import { codexAgentId, handoffFile, loadConfig, parseThreadMode } from '../../adapters/codex/config.js';

t.test('parseThreadMode: start, resume, auto; anything else means start', async (t) => {
  t.equal(parseThreadMode('resume'), 'resume');
  t.equal(parseThreadMode(' AUTO '), 'auto');
  t.equal(parseThreadMode('start'), 'start');
  for (const raw of [undefined, '', 'resum', 'attach', '1']) t.equal(parseThreadMode(raw), 'start', `${JSON.stringify(raw)} → start`);
});

t.test('loadConfig: defaults from docs/PROTOCOL.md', async (t) => {
  const warnings: string[] = [];
  const c = loadConfig({ CODEX_LIVE_CWD: '/home/dev/proj', CODEX_LIVE_RIG: 'rig1', AGENT_RELAY_HOME: '/h' }, (w) => warnings.push(w));
  t.same(warnings, []);
  t.match(c, {
    appServerUrl: 'ws://127.0.0.1:4501',
    cwd: '/home/dev/proj',
    rig: 'rig1',
    pollIntervalMs: 2000,
    heartbeatIntervalMs: 30_000,
    coalesceWindowMs: 600,
    reconnectInitialMs: 1000,
    reconnectMaxMs: 10_000,
    threadMode: 'start',
    threadId: undefined,
    relayUrl: 'http://127.0.0.1:4850',
    capabilities: ['chat'],
    steer: false,
  });
  t.match(c.statePath, /^\/h\/codex\/state-[0-9a-f]{16}\.json$/);
  t.equal(codexAgentId(c), 'codex-rig1-proj');
  t.equal(handoffFile(c.handoffDir, '/tmp/my proj'), '/h/codex/threads/_tmp_my_proj.json', 'the same name the hook script writes');
});

t.test('loadConfig: values are read, malformed ones warn naming the variable and fall back', async (t) => {
  const warnings: string[] = [];
  const c = loadConfig(
    {
      CODEX_APP_SERVER_URL: 'http://not-ws',
      CODEX_LIVE_POLL_INTERVAL_MS: 'soon',
      CODEX_LIVE_HEARTBEAT_INTERVAL_MS: '5000',
      CODEX_LIVE_COALESCE_WINDOW_MS: '-3',
      CODEX_LIVE_RECONNECT_INITIAL_MS: '200',
      CODEX_LIVE_RECONNECT_MAX_MS: '100',
      CODEX_THREAD_MODE: 'sideways',
      CODEX_THREAD_ID: 'thr_1',
      CODEX_MODEL: 'gpt-5-codex',
      CODEX_LIVE_APPROVAL_POLICY: 'sometimes',
      CODEX_LIVE_SANDBOX: 'workspace-write',
      AGENT_RELAY_CAPS: 'chat, review',
      CODEX_LIVE_STEER: 'true',
    },
    (w) => warnings.push(w),
  );
  t.equal(c.appServerUrl, 'ws://127.0.0.1:4501');
  t.equal(c.pollIntervalMs, 2000);
  t.equal(c.heartbeatIntervalMs, 5000);
  t.equal(c.coalesceWindowMs, 600);
  t.equal(c.reconnectInitialMs, 200);
  t.equal(c.reconnectMaxMs, 200, 'max below initial is raised to initial');
  t.equal(c.threadMode, 'start');
  t.equal(c.threadId, 'thr_1');
  t.equal(c.model, 'gpt-5-codex');
  t.equal(c.approvalPolicy, undefined);
  t.equal(c.sandbox, 'workspace-write');
  t.same(c.capabilities, ['chat', 'review']);
  t.equal(c.steer, true);
  for (const name of ['CODEX_APP_SERVER_URL', 'CODEX_LIVE_POLL_INTERVAL_MS', 'CODEX_LIVE_COALESCE_WINDOW_MS', 'CODEX_LIVE_RECONNECT_MAX_MS', 'CODEX_THREAD_MODE', 'CODEX_LIVE_APPROVAL_POLICY']) {
    t.ok(
      warnings.some((w) => w.startsWith(`${name}=`)),
      `a warning names ${name}`,
    );
  }
  t.equal(warnings.length, 6, warnings.join('\n'));
});
