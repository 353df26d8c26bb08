import { RelayError, type TaskCreateParams } from '../../protocol/index.js';
import { attachStream, checkAttach, detach } from './attach.js';
import type { Domain } from './domain.js';
import { checkCreate, createTask } from './handlers/task.js';
import type { Caller, RelayEdge } from './ports.js';

/**
 * The domain's half of the edge port (the method table is the dispatcher's half; the
 * composition root joins them). Each entry here is the same domain function a method uses.
 */
export function domainEdge(d: Domain): Omit<RelayEdge, 'call' | 'handleFrame'> {
  return {
    attach: (session, request, caller) => attachStream(d, session, request, caller),
    checkAttach: (request, caller) => checkAttach(d, request, caller),
    detach: (session) => detach(d, session),
    integration: (name) => {
      const i = d.integrations.get(name);
      return i ? { target: i.target, channel: i.channel, callbackUrl: i.callbackUrl } : undefined;
    },
    ingest: (caller: Caller, params: TaskCreateParams) => {
      const delivery = caller.integration;
      if (!delivery) throw new RelayError('unauthorized', 'unauthorized: a webhook delivery needs its integration’s credentials');
      checkCreate(d, delivery.name, params);
      const receipt = delivery.replayKey ? { integration: delivery.name, deliveryId: delivery.replayKey } : null;
      return createTask(d, `ext:${delivery.name}`, delivery.name, params, receipt);
    },
    receiptSeen: (integration, deliveryId) => d.store.receipts.seen(integration, deliveryId),
    health: async () => {
      // A full disk still takes the write lock: the last commit's outcome says whether writes land.
      const lastCommitFailure = d.store.health.lastFailure;
      return {
        writable: lastCommitFailure === null && (await d.store.health.isWritable()),
        lastCommitFailure,
        agents: d.agents.size,
        connections: d.sessions.size,
        cursor: d.notifier.publishedThrough().messageId,
        storage: d.store.health.settings(),
      };
    },
    onMessage: (listener) => d.notifier.onMessage(listener),
  };
}
