import type { NewMessage, StoredAgent, WriteOp } from '../../broker/domain/store-port.js';

/** A stored agent record for tests that write the store directly: online, no routing fields, `over` on top. */
export function storedAgent(id: string, over: Partial<StoredAgent> = {}): StoredAgent {
  return {
    id,
    label: id,
    tags: [],
    capabilities: [],
    channels: [],
    client: null,
    host: null,
    cwd: null,
    rig: null,
    status: 'online',
    ready: true,
    system: false,
    tokenHash: 'h'.repeat(64),
    registeredAt: 1,
    lastSeenAt: 1,
    offlineAt: null,
    meta: {},
    inboxFloor: 0,
    ...over,
  };
}

/** A message as the domain hands it to the store: alice to bob, no channel, thread or task. */
export function newMessage(over: Partial<NewMessage> = {}): NewMessage {
  return {
    from: 'alice',
    to: 'bob',
    channel: null,
    subject: null,
    body: 'hi',
    replyTo: null,
    threadId: null,
    claimable: false,
    taskId: null,
    createdAt: 1,
    meta: {},
    ...over,
  };
}

/** A message.send op of `newMessage(over)` to `recipients`. */
export function sendOp(over: Partial<NewMessage> = {}, recipients: string[] = ['bob'], at = over.createdAt ?? 1): WriteOp {
  return { op: 'message.send', at, message: newMessage(over), recipients, task: null };
}

/** A task.create op from integration `ci`, targeting bob, announced to bob (with a callback to `callbackUrl`, if given). */
export function taskCreateOp(title: string, at = 1, callbackUrl: string | null = null): WriteOp {
  return {
    op: 'task.create',
    at,
    from: 'ext:ci',
    source: 'ci',
    input: { title, target: 'bob', body: null, channel: null, dedupeKey: null, callbackUrl, meta: {} },
    action: 'trigger',
    announce: { from: 'ext:ci', recipients: ['bob'] },
    receipt: null,
  };
}
