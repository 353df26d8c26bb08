// The dashboard test imports this file: type-only imports here, nothing from Node.
import type { RelayEvent, Task } from '../../protocol/common.js';
import type { ServerRequest } from './app-server.js';
import { DECISIONS, taskChoices } from '../../protocol/approvals.js';
import { choicesOf, listedEntry } from './approvals.js';

/**
 * The decision a closed approval task carries: the note of its closing update when it names one
 * of the task's choices or a v2 word; otherwise `done` means accept, `failed` decline, `canceled`
 * cancel. It may not be offered: offeredDecision maps it.
 */
export function decisionOf(task: Task, event: RelayEvent): string | null {
  if (!['done', 'failed', 'canceled'].includes(task.status)) return null;
  const note = typeof event.data.note === 'string' ? event.data.note.trim().toLowerCase() : '';
  const named = [...taskChoices(task), ...DECISIONS].find((d) => d.toLowerCase() === note);
  if (named) return named;
  return task.status === 'done' ? 'accept' : task.status === 'failed' ? 'decline' : 'cancel';
}

/**
 * What each decision may become when the request does not offer it, in order of preference.
 * Never broader than asked: a "yes" narrows (for session or with a policy rule → this once),
 * and when no narrower "yes" is offered it becomes a "no", never the other way round. A "no" is
 * the other "no": 0.171.0 offers a command approval `cancel` but not `decline`, so a person who
 * declines (or fails the task) gets cancel — the command does not run and the turn is
 * interrupted (the sender is told), rather than running anything they refused.
 */
const FALLBACKS: Record<string, string[]> = {
  accept: ['decline', 'cancel'],
  acceptForSession: ['accept', 'decline', 'cancel'],
  acceptWithExecpolicyAmendment: ['accept', 'decline', 'cancel'],
  applyNetworkPolicyAmendment: ['accept', 'decline', 'cancel'],
  decline: ['cancel'],
  cancel: ['decline'],
};

/**
 * The offered choice to send for `asked`. The real server treats a decision outside the enum as
 * a failed approval (it resolves the request and fails the item), and one outside
 * `availableDecisions` is honoured today only by leniency, so only offered choices go back.
 * `mapped` is set when the choice differs from what was asked (the desk logs it). Only when a
 * request offers no "no" at all does `decline` go back unoffered (`offered: false`).
 */
export function offeredDecision(choices: readonly string[], asked: string): { choice: string; mapped: boolean; offered: boolean } {
  if (choices.includes(asked)) return { choice: asked, mapped: false, offered: true };
  const next = (FALLBACKS[asked] ?? ['decline', 'cancel']).find((c) => choices.includes(c));
  return next ? { choice: next, mapped: true, offered: true } : { choice: 'decline', mapped: true, offered: false };
}

/**
 * The app-server's answer for an offered choice: `{decision}` with the request's own entry (an
 * object entry goes back as listed, e.g. `{acceptWithExecpolicyAmendment: {execpolicy_amendment:
 * [...]}}`: the amendment is Codex's, never the adapter's), or `{permissions, scope}` for
 * permission requests.
 */
export function answerFor(req: ServerRequest, choice: string): Record<string, unknown> {
  if (req.method === 'item/permissions/requestApproval') {
    const granted = choice === 'accept' || choice === 'acceptForSession';
    return granted ? { permissions: req.params.permissions ?? {}, scope: choice === 'acceptForSession' ? 'session' : 'turn' } : { permissions: {} };
  }
  return { decision: listedEntry(req, choice) ?? choice };
}

/** The choice to send for a request, mapped to what it offers. */
export function decide(req: ServerRequest, asked: string): ReturnType<typeof offeredDecision> {
  return offeredDecision(choicesOf(req), asked);
}
