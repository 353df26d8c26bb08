import t from 'tap';
import { claudeAgentId } from '../../adapters/claude/hooks.js';
import { codexAgentId, loadConfig } from '../../adapters/codex/config.js';
import { generateAgentId } from '../../broker/domain/handlers/agent.js';
import { agentIdSlug, AgentIdSchema, derivedAgentId } from '../../protocol/index.js';

t.test('agentIdSlug: lowercase, one dash per run of other characters, none at the ends', async (t) => {
  t.equal(agentIdSlug('MacMini2.LOCAL'), 'macmini2-local');
  t.equal(agentIdSlug('  My Project__v2 '), 'my-project-v2');
  t.equal(agentIdSlug('héllo_wörld'), 'h-llo-w-rld', 'non-ASCII letters are separators');
  t.equal(agentIdSlug('---...   '), '', 'nothing left');
  t.equal(agentIdSlug(''), '');
  t.equal(agentIdSlug(agentIdSlug('A--b..C')), agentIdSlug('A--b..C'), 'idempotent');
});

t.test('derivedAgentId: non-empty slugs joined by dashes, cut to max', async (t) => {
  t.equal(derivedAgentId(['MacMini2', undefined, '', '🚀', 'Live Rig']), 'macmini2-live-rig', 'empty and unslugable parts are dropped');
  t.equal(derivedAgentId([]), '');
  const long = derivedAgentId(['h'.repeat(300)]);
  t.equal(long.length, 128, 'AgentIdSchema length by default');
  t.ok(AgentIdSchema.safeParse(long).success);
  t.equal(derivedAgentId(['abc', 'def'], 5), 'abc-d');
});

t.test('the three callers keep the ids they derived before sharing the rule', async (t) => {
  // Expected values are what each caller's own slug code produced.
  t.equal(codexAgentId(loadConfig({ CODEX_LIVE_RIG: 'Rig 1', CODEX_LIVE_CWD: '/src/My.Proj/' })), 'codex-rig-1-my-proj');
  t.equal(codexAgentId(loadConfig({ CODEX_LIVE_RIG: '---', CODEX_LIVE_CWD: '/' })), 'codex', 'only the prefix when nothing else slugs');
  t.equal(codexAgentId(loadConfig({ CODEX_LIVE_AGENT_ID: 'Mine', CODEX_LIVE_CWD: '/x' })), 'Mine', 'an explicit id is kept as given');
  t.equal(claudeAgentId('Host.Local', '/home/dev/App X', '9F1C2D3E-aaaa-bbbb'), 'host-local-claude-app-x-9f1c2d3e');
  t.equal(claudeAgentId('h', '/w/p', 'abcdefg-hij'), 'h-claude-p-abcdefg-', 'the session part is cut after slugging, not slugged again');
  t.equal(claudeAgentId('', '/', '…'), 'claude');
  t.match(generateAgentId({ host: 'H', client: 'C C', cwd: '/a/B_c' }), /^h-c-c-b-c-[0-9a-f]{8}$/);
  t.match(generateAgentId({ host: 'h'.repeat(300) }), /^h{100}-[0-9a-f]{8}$/, 'the prefix is cut at 100');
});
