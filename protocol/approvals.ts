// The approval vocabulary the Codex adapter, the CLI (`agent-relay approve`) and the dashboard
// share: what marks a task as an approval, and the decisions a person may give. The dashboard
// bundles this file for the browser: type-only imports here, nothing from Node, no zod.
import type { Task } from './common.js';

/** The `meta.kind` of approval tasks: the dashboard and CLI look for it. */
export const APPROVAL_TASK_KIND = 'codex.approval';

/**
 * The choices an approval task offers when the request lists none (Codex before
 * `availableDecisions`, file-change and permission requests): the four v2 words.
 */
export const DECISIONS = ['accept', 'acceptForSession', 'decline', 'cancel'] as const;
export type Decision = (typeof DECISIONS)[number];

/** The choices an approval task offers (its `meta.choices`; DECISIONS for a task without them). */
export function taskChoices(task: Pick<Task, 'meta'>): string[] {
  const c = task.meta.choices;
  return Array.isArray(c) && c.length && c.every((x) => typeof x === 'string') ? (c as string[]) : [...DECISIONS];
}

/** Button labels; a choice not named here shows its own word. */
export const CHOICE_LABELS: Record<string, string> = {
  accept: 'Accept',
  acceptForSession: 'Accept for session',
  acceptWithExecpolicyAmendment: 'Accept and always allow',
  applyNetworkPolicyAmendment: 'Accept and change network policy',
  decline: 'Decline',
  cancel: 'Cancel turn',
};
