import { RelayError } from '../../protocol/index.js';
import type { CallContext } from './context.js';

/**
 * The sender name: agents send as themselves; observers as `ext:NAME` of their choosing, except a
 * configured integration's `ext:NAME`, which its ingress announces tasks as.
 */
export function senderOf(ctx: CallContext, from: string | undefined): string {
  if (ctx.agentId) {
    if (from !== undefined && from !== ctx.agentId) throw new RelayError('invalidParams', 'from: only observers may choose a sender; agents send as themselves');
    return ctx.agentId;
  }
  if (from !== undefined && ctx.domain.integrations.has(from.slice('ext:'.length))) {
    throw new RelayError('unauthorized', `unauthorized: from: ${from} is the integration ${from.slice('ext:'.length)}'s sender name, used only by its ingress; choose another ext:NAME`);
  }
  return from ?? 'ext:observer';
}
