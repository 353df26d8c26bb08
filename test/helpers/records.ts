import type { StoredAgent } from '../../broker/domain/store-port.js';

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
