// The dashboard bundles this file for the browser: type-only imports here, nothing from Node.
import type { RelayEvent, Task } from '../../protocol/common.js';
import type { ServerRequest } from './app-server.js';

export const DECISIONS = ['accept', 'acceptForSession', 'decline', 'cancel'] as const;
export type Decision = (typeof DECISIONS)[number];

/** Server requests forwarded to the relay as approval tasks. */
export const APPROVAL_METHODS = ['item/commandExecution/requestApproval', 'item/fileChange/requestApproval', 'item/permissions/requestApproval'] as const;

export function isApprovalRequest(method: string): boolean {
  return (APPROVAL_METHODS as readonly string[]).includes(method);
}

/**
 * Server requests the adapter knows but cannot put to a person: they stall the turn until
 * answered, and the server refuses a JSON-RPC error for them (it keeps waiting), so they get a
 * valid "nothing to give" answer. Only methods not known at all get an error.
 */
export const UNATTENDED_ANSWERS: Record<string, Record<string, unknown>> = {
  // ToolRequestUserInputResponse: no answer to any question.
  'item/tool/requestUserInput': { answers: {} },
  // McpServerElicitationRequestResponse: the user declined to provide the value.
  'mcpServer/elicitation/request': { action: 'decline', content: null },
};

/** The `meta.kind` of approval tasks: the dashboard and CLI look for it. */
export const APPROVAL_TASK_KIND = 'codex.approval';

/** What a person deciding needs to see: the command or change, where, and why. */
export function describeApproval(req: ServerRequest): { title: string; body: string } {
  const p = req.params;
  const reason = typeof p.reason === 'string' && p.reason ? `\nReason: ${p.reason}` : '';
  if (req.method === 'item/commandExecution/requestApproval') {
    const command = Array.isArray(p.command) ? p.command.join(' ') : String(p.command ?? '');
    return { title: `Codex asks to run: ${command}`.slice(0, 500), body: `Command: ${command}\nIn: ${p.cwd ?? '?'}${reason}` };
  }
  if (req.method === 'item/fileChange/requestApproval') {
    const root = p.grantRoot ? `\nWrite access to: ${p.grantRoot}` : '';
    return { title: 'Codex asks to change files', body: `File change (item ${p.itemId ?? '?'})${root}${reason}` };
  }
  return { title: 'Codex asks for permissions', body: `Permissions: ${JSON.stringify(p.permissions ?? {})}${reason}` };
}

/**
 * The decision a closed approval task carries: the note of its closing update when it names one
 * of DECISIONS; otherwise `done` means accept, `failed` decline, `canceled` cancel.
 */
export function decisionOf(task: Task, event: RelayEvent): Decision | null {
  if (!['done', 'failed', 'canceled'].includes(task.status)) return null;
  const note = typeof event.data.note === 'string' ? event.data.note.trim() : '';
  const named = DECISIONS.find((d) => d.toLowerCase() === note.toLowerCase());
  if (named) return named;
  return task.status === 'done' ? 'accept' : task.status === 'failed' ? 'decline' : 'cancel';
}

/** The app-server's answer for a decision: `{decision}`, or `{permissions, scope}` for permission requests. */
export function answerFor(req: ServerRequest, decision: Decision): Record<string, unknown> {
  if (req.method === 'item/permissions/requestApproval') {
    const granted = decision === 'accept' || decision === 'acceptForSession';
    return granted ? { permissions: req.params.permissions ?? {}, scope: decision === 'acceptForSession' ? 'session' : 'turn' } : { permissions: {} };
  }
  return { decision };
}
