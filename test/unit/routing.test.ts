// Unit layer: pure domain functions, no relay, no sockets, no database (`npm run test:unit`).
import t from 'tap';
import { changesRouting, resolveTarget, UnknownAgentError } from '../../broker/domain/routing.js';
import type { CachedAgent, WriteOp } from '../../broker/domain/store-port.js';
import { storedAgent } from '../helpers/records.js';

function agent(id: string, over: Partial<CachedAgent> = {}): CachedAgent {
  const { meta: _meta, ...a } = storedAgent(id, { label: id.toUpperCase(), ...over });
  return a;
}

const agents = new Map<string, CachedAgent>(
  [
    agent('alice', { tags: ['ops'], capabilities: ['review'] }),
    agent('bob', { tags: ['ops', 'db'], label: 'Bob Builder' }),
    agent('carol', { tags: ['ops'], status: 'offline', offlineAt: 5 }),
    agent('dave', { capabilities: ['review'], ready: false, channels: ['deploys'] }),
    agent('erin', { status: 'busy' }),
  ].map((a) => [a.id, a]),
);

t.test('broadcast reaches every agent that is not offline, never the sender', async (t) => {
  const r = resolveTarget('broadcast', null, 'alice', agents);
  t.same(r.recipients, ['bob', 'dave', 'erin']);
  t.same(r.warnings, [{ agentId: 'dave', reason: 'not_ready' }], 'a recipient that is not ready is named');
});

t.test('tag:, cap: and label: select by tag, capability and label (case-insensitive)', async (t) => {
  t.same(resolveTarget('tag:ops', null, 'erin', agents).recipients, ['alice', 'bob'], 'carol has the tag but is offline');
  t.same(resolveTarget('cap:review', null, 'erin', agents).recipients, ['alice', 'dave']);
  t.same(resolveTarget('label:bob builder', null, 'erin', agents).recipients, ['bob']);
  t.same(resolveTarget('tag:nobody', null, 'erin', agents), { recipients: [], warnings: [{ agentId: '', reason: 'no_recipients' }] }, 'no match: a no_recipients warning');
});

t.test('a channel skips agents whose channel list leaves it out; an empty list takes every channel', async (t) => {
  t.same(resolveTarget('broadcast', 'deploys', 'erin', agents).recipients, ['alice', 'bob', 'dave']);
  t.same(resolveTarget('broadcast', 'chatter', 'erin', agents).recipients, ['alice', 'bob'], 'dave listens to deploys only');
});

t.test('a direct id always gets the message, offline or not; an unknown id is refused', async (t) => {
  t.same(resolveTarget('carol', null, 'alice', agents), { recipients: ['carol'], warnings: [{ agentId: 'carol', reason: 'offline' }] });
  t.same(resolveTarget('bob', 'anything', 'alice', agents), { recipients: ['bob'], warnings: [] }, 'the channel does not filter a direct id');
  let thrown: unknown;
  try {
    resolveTarget('zed', null, 'alice', agents);
  } catch (err) {
    thrown = err;
  }
  t.ok(thrown instanceof UnknownAgentError, 'an unknown id throws UnknownAgentError (the core answers it as notFound)');
  t.match((thrown as Error).message, /no agent with id zed/);
});

t.test('ext: targets (the dashboard, scripts) hold no inbox: nobody, and no warning', async (t) => {
  t.same(resolveTarget('ext:dashboard', null, 'alice', agents), { recipients: [], warnings: [] });
});

t.test('changesRouting: what can change who a fan-out target reaches (the ops a cluster refuses stale routes after)', async (t) => {
  const { inboxFloor: _f, ...bob } = storedAgent('bob');
  const patch = (p: object): WriteOp => ({ op: 'agent.patch', at: 1, id: 'bob', expect: { tokenHash: bob.tokenHash, status: 'online' }, patch: p, events: [] });
  t.equal(changesRouting({ op: 'agent.insert', at: 1, agent: bob, maxAgents: 10, events: [] }), true, 'a new agent');
  t.equal(changesRouting({ op: 'agent.offline', at: 1, id: 'bob', patch: {}, reason: 'left', releases: [] }), true, 'an agent going offline');
  for (const field of ['label', 'tags', 'capabilities', 'channels', 'status'] as const) {
    t.equal(changesRouting(patch({ [field]: field === 'label' || field === 'status' ? 'x' : [] })), true, `a change of ${field}`);
  }
  t.equal(changesRouting(patch({ lastSeenAt: 2, ready: false, meta: {} })), false, 'a heartbeat, readiness or meta');
  t.equal(changesRouting({ op: 'agent.touch', at: 1, ids: ['bob'] }), false, 'a last-seen touch');
});
