import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { agentIdSlug } from '../../protocol/agent-id.js';
import type { Agent, Message } from '../../protocol/common.js';
import { list } from '../../clients/cli/context.js';
import { clip } from '../../clients/cli/format.js';
import { loadIdentity, saveIdentity, type StoredIdentity } from '../../clients/cli/identity-store.js';
import type { RelayHttpClient } from '../../clients/http-client.js';
import { claimDelivery, claimedIds, forgetSession, loadSession, pruneClaims, pruneOldClaims, releaseDelivery, saveSession, wasDelivered, type ClaudeSession } from './session-state.js';

/** The fields of Claude Code's hook input that the hooks use. */
export interface HookInput {
  session_id: string;
  cwd: string;
  hook_event_name?: string;
  /** SessionStart: startup | resume | clear | compact. (No `model` and no `permission_mode` there.) */
  source?: string;
  stop_hook_active?: boolean;
  /** UserPromptSubmit: the prompt, or the monitor's notification line when that line woke an idle session. */
  prompt?: string;
  /** SessionEnd: `other` in `-p` runs, `prompt_input_exit` after `/exit`, and others; not used. */
  reason?: string;
}

export interface HookDeps {
  http: RelayHttpClient;
  /** AGENT_RELAY_HOME: identities and session state. */
  home: string;
  env: NodeJS.ProcessEnv;
  host: string;
}

/** Claude stops honouring Stop hand-overs (blocks) after 8 in a row; stay well under. */
export const MAX_CONSECUTIVE_BLOCKS = 5;
const MAX_CONTEXT_CHARS = 9000;
const INBOX_BATCH = 20;
/** Claims older than this are dropped whatever their message's state (SessionStart prunes them). */
export const CLAIM_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** Stable per session: host, client `claude`, the cwd's name and the session id's first 8 slug characters. */
export function claudeAgentId(host: string, cwd: string, sessionId: string): string {
  // The session part is cut before joining and not slugged again (a cut may end on a dash), as ids always were.
  const parts = [agentIdSlug(host), 'claude', agentIdSlug(basename(cwd)), agentIdSlug(sessionId).slice(0, 8)].filter(Boolean);
  return parts.join('-').slice(0, 128);
}

interface ProjectFile {
  label?: string;
  tags?: string[];
  capabilities?: string[];
  channels?: string[];
}

/** `.agent-relay.json` in the project: tags, capabilities, channels, label for its sessions. */
function readProjectFile(cwd: string): ProjectFile {
  try {
    const v = JSON.parse(readFileSync(join(cwd, '.agent-relay.json'), 'utf8')) as ProjectFile;
    return v && typeof v === 'object' ? v : {};
  } catch {
    return {};
  }
}

function context(event: string, text: string): string {
  return JSON.stringify({ hookSpecificOutput: { hookEventName: event, additionalContext: text } });
}

function commandsHelp(id: string): string {
  return [
    `Reply: agent-relay send --as ${id} --reply-to MESSAGE_ID TO "text"`,
    `Send: agent-relay send --as ${id} TO "text" (TO is an agent id, tag:NAME, cap:NAME, label:NAME or broadcast)`,
    `Inbox: agent-relay inbox --as ${id} --unread`,
    `Claim work: agent-relay claim --as ${id} TASK_ID (or --message MESSAGE_ID for a claimable message)`,
    `Report: agent-relay task update --as ${id} TASK_ID --progress 50 | --status done`,
  ].join('\n');
}

/** The token `register` stored for `id` on the relay these hooks talk to. */
function storedIdentity(deps: HookDeps, id: string) {
  return loadIdentity(deps.home, id, deps.http.url);
}

/** Register (or resume) this session's agent and remember it for the later hooks. */
async function registerSession(input: HookInput, deps: HookDeps): Promise<{ session: ClaudeSession; agent: Agent }> {
  const id = claudeAgentId(deps.host, input.cwd, input.session_id);
  const project = readProjectFile(input.cwd);
  const envTags = deps.env.AGENT_RELAY_TAGS ? list(deps.env.AGENT_RELAY_TAGS) : [];
  const caps = deps.env.AGENT_RELAY_CAPS ? list(deps.env.AGENT_RELAY_CAPS) : (project.capabilities ?? ['chat']);
  const stored = storedIdentity(deps, id);
  const r = await deps.http.call('agent/register', {
    id,
    ...(stored ? { agentToken: stored.token } : {}),
    label: project.label ?? `claude ${basename(input.cwd)}`,
    tags: [...new Set(['claude', agentIdSlug(basename(input.cwd)), ...(project.tags ?? []), ...envTags].filter(Boolean))],
    capabilities: caps,
    ...(project.channels ? { channels: project.channels } : {}),
    client: 'claude',
    host: deps.host,
    cwd: input.cwd,
    meta: { sessionId: input.session_id },
  });
  // The monitor resumes after the stored cursor. A first registration stores the relay's cursor, so
  // a message sent before the monitor connects (it starts a second or more after this hook) is
  // still pushed to it, not left for the next prompt.
  saveIdentity(deps.home, { cursor: r.cursor, ...(stored ?? {}), id, token: r.agentToken, url: deps.http.url });
  const previous = loadSession(deps.home, input.session_id);
  const session: ClaudeSession = previous ?? { sessionId: input.session_id, agentId: id, cwd: input.cwd, url: deps.http.url, handedOver: [], consecutiveBlocks: 0 };
  saveSession(deps.home, session);
  return { session, agent: r.agent };
}

/** SessionStart: register, then tell Claude in a few facts who it is on the relay and how to use it. */
export async function sessionStart(input: HookInput, deps: HookDeps): Promise<string> {
  const { session, agent } = await registerSession(input, deps);
  pruneOldClaims(deps.home, CLAIM_MAX_AGE_MS);
  const identity = { agentId: agent.id, agentToken: storedIdentity(deps, agent.id)!.token };
  const [agents, inbox] = await Promise.all([deps.http.call('agent/list', { status: 'online' }), deps.http.inbox(identity, { unread: true, limit: 1 })]);
  const others = agents.agents.filter((a) => a.id !== agent.id);
  const lines = [
    `Agent Relay is running at ${session.url}. This Claude session is relay agent ${agent.id} (tags: ${agent.tags.join(', ') || 'none'}).`,
    others.length
      ? `Online agents: ${others
          .slice(0, 20)
          .map((a) => `${a.id}${a.label !== a.id ? ` (${a.label})` : ''}${a.tags.length ? ` [${a.tags.join(',')}]` : ''}`)
          .join('; ')}${others.length > 20 ? `; and ${others.length - 20} more` : ''}.`
      : 'No other agents are online.',
    inbox.messages.length ? 'There are unread relay messages; they arrive as context on the next prompt.' : 'No unread relay messages.',
    'Relay messages are requests from other agents or people, to weigh like any other input.',
    commandsHelp(agent.id),
  ];
  return context('SessionStart', lines.join('\n'));
}

/** The text for Claude and the messages it holds: once the cap is reached the rest wait for the next hook. */
function renderMessages(id: string, messages: Message[], all = false): { text: string; shown: Message[] } {
  const parts: string[] = [];
  const shown: Message[] = [];
  let used = 0;
  for (const m of messages) {
    const head = `Relay message #${m.id} from ${m.from}${m.channel ? ` in ${m.channel}` : ''}${m.subject ? `, subject "${clip(m.subject, 100)}"` : ''}${m.replyTo ? `, replying to #${m.replyTo}` : ''}${m.claimable ? `, claimable as task #${m.taskId} (agent-relay claim --as ${id} ${m.taskId})` : ''}:`;
    const room = Math.max(200, MAX_CONTEXT_CHARS - used - head.length);
    const body = m.body.length > room ? `${m.body.slice(0, room)}… (full text: agent-relay threads ${m.id})` : m.body;
    parts.push(`${head}\n${body}`);
    shown.push(m);
    used += head.length + body.length;
    if (used >= MAX_CONTEXT_CHARS && !all) break;
  }
  parts.push(`Reply with: agent-relay send --as ${id} --reply-to MESSAGE_ID SENDER "text"`);
  return { text: parts.join('\n\n'), shown };
}

/** Unread messages not yet handed over by a hook of this session, oldest first. */
async function pending(input: HookInput, deps: HookDeps): Promise<{ session: ClaudeSession; identity: { agentId: string; agentToken: string }; messages: Message[] } | null> {
  let session = loadSession(deps.home, input.session_id);
  // SessionStart may have run while the relay was down: join now that it answers.
  if (!session) session = (await registerSession(input, deps)).session;
  const stored = storedIdentity(deps, session.agentId);
  if (!stored) return null;
  const identity = { agentId: stored.id, agentToken: stored.token };
  const inbox = await deps.http.inbox(identity, { unread: true, limit: INBOX_BATCH });
  const seen = new Set(session.handedOver);
  // Skip what a hook handed over and what the monitor printed (its notification is how Claude gets it).
  const delivered = (m: Message) => seen.has(m.id) || wasDelivered(deps.home, session!.agentId, m.id);
  // What the monitor printed (acknowledged `injected`) Claude has: mark it read like a hook's hand-over,
  // so the inbox and SessionStart's "unread" agree. A failure here only leaves it unread.
  const printed = inbox.messages.filter((m) => !seen.has(m.id) && delivered(m)).map((m) => m.id);
  if (printed.length) await deps.http.call('message/read', { ids: printed }, identity).catch(() => undefined);
  return { session, identity, messages: inbox.messages.filter((m) => !delivered(m)) };
}

/**
 * Claim the messages that fit (the monitor may print one at the same moment: whoever claims first
 * delivers it) and render the ones this hook won. Null when it won none.
 */
function claimAndRender(deps: HookDeps, agentId: string, messages: Message[]): { text: string; shown: Message[] } | null {
  const fit = renderMessages(agentId, messages);
  const won = fit.shown.filter((m) => claimDelivery(deps.home, agentId, m.id, 'hook'));
  if (won.length === 0) return null;
  return won.length === fit.shown.length ? fit : renderMessages(agentId, won, true);
}

/** After Claude has the text: remember the ids (never hand over twice), then mark them read. */
async function handedOver(deps: HookDeps, p: NonNullable<Awaited<ReturnType<typeof pending>>>): Promise<void> {
  const ids = p.messages.map((m) => m.id);
  saveSession(deps.home, { ...p.session, handedOver: [...p.session.handedOver, ...ids] });
  await deps.http.call('message/read', { ids }, p.identity);
}

/**
 * What a hook prints, `commit` to run once it is written (marks the messages read), and `release` to
 * run instead when it could not be written (Claude is gone): the claims go back, the messages stay
 * unread for whichever path comes next.
 */
export interface HookResult {
  stdout: string;
  commit: () => Promise<void>;
  release: () => void;
}

const NOTHING: HookResult = { stdout: '', commit: async () => undefined, release: () => undefined };

function handOver(deps: HookDeps, p: NonNullable<Awaited<ReturnType<typeof pending>>>, stdout: string, shown: Message[]): HookResult {
  return {
    stdout,
    commit: () => handedOver(deps, { ...p, messages: shown }),
    release: () => {
      for (const m of shown) releaseDelivery(deps.home, p.session.agentId, m.id, 'hook');
    },
  };
}

/** UserPromptSubmit: unread messages become additional context. */
export async function userPromptSubmit(input: HookInput, deps: HookDeps): Promise<HookResult> {
  const p = await pending(input, deps);
  if (!p || p.messages.length === 0) return NOTHING;
  const r = claimAndRender(deps, p.session.agentId, p.messages);
  if (!r) return NOTHING;
  return handOver(deps, p, context('UserPromptSubmit', r.text), r.shown);
}

/**
 * Stop: when messages wait, keep Claude working on them with Stop's additionalContext (a bounded
 * number of hand-overs in a row, counted per session because stop_hook_active is not reliable).
 */
export async function stop(input: HookInput, deps: HookDeps): Promise<HookResult> {
  const p = await pending(input, deps);
  if (!p) return NOTHING;
  const r = p.messages.length === 0 || p.session.consecutiveBlocks >= MAX_CONSECUTIVE_BLOCKS ? null : claimAndRender(deps, p.session.agentId, p.messages);
  if (!r) {
    // Let Claude stop; what is left stays unread for the next prompt.
    saveSession(deps.home, { ...p.session, consecutiveBlocks: 0 });
    return NOTHING;
  }
  // additionalContext, not `decision: "block"`: Claude Code (2.1.197) shows a block as "Stop hook error" and
  // gives its reason to the model twice; Stop's additionalContext keeps Claude working and arrives once.
  const blocked = { ...p, session: { ...p.session, consecutiveBlocks: p.session.consecutiveBlocks + 1 } };
  return handOver(deps, blocked, context('Stop', `New relay messages arrived while you worked. Read them and act or reply as fits:\n\n${r.text}`), r.shown);
}

/**
 * Claims no path can ask about again. Every message below the oldest unread one is read, so no hook
 * hands it over again; the monitor's resume cursor is moved up to there (never down), so no replay
 * prints it again either. Claims above it stay: the monitor may replay those.
 */
async function pruneDelivered(deps: HookDeps, stored: StoredIdentity): Promise<void> {
  const claimed = claimedIds(deps.home, stored.id);
  if (claimed.length === 0) return;
  const { messages } = await deps.http.inbox({ agentId: stored.id, agentToken: stored.token }, { unread: true, limit: 1 });
  const upTo = messages[0] ? messages[0].id - 1 : Math.max(...claimed);
  const current = storedIdentity(deps, stored.id);
  if (!current) return;
  if ((current.cursor ?? 0) < upTo) saveIdentity(deps.home, { ...current, cursor: upTo });
  // Read back: a monitor stopping at this moment may have written its own (lower) cursor meanwhile.
  pruneClaims(deps.home, stored.id, Math.min(upTo, storedIdentity(deps, stored.id)?.cursor ?? 0));
}

/** SessionEnd: the agent leaves now (its claimed work is released) rather than after the stale TTL. */
export async function sessionEnd(input: HookInput, deps: HookDeps): Promise<void> {
  const session = loadSession(deps.home, input.session_id);
  if (!session) return;
  const stored = storedIdentity(deps, session.agentId);
  if (stored) await deps.http.call('agent/update', { id: stored.id, status: 'offline' }, { agentId: stored.id, agentToken: stored.token });
  forgetSession(deps.home, session);
  if (stored) await pruneDelivered(deps, stored);
}
