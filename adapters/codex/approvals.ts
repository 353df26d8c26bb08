// What the adapter reads of Codex's approval requests. The shared vocabulary (APPROVAL_TASK_KIND,
// DECISIONS, taskChoices, CHOICE_LABELS: the CLI and the dashboard use it too) is the protocol's,
// protocol/approvals.ts. The dashboard test imports this file: type-only imports here, nothing from Node.
import { DECISIONS } from '../../protocol/approvals.js';
import type { ServerRequest } from './app-server.js';

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

/**
 * The name of one `availableDecisions` entry: a string as-is, an object by its single key
 * (0.171.0 lists `{"acceptWithExecpolicyAmendment": {"execpolicy_amendment": [...]}}`).
 */
export function choiceName(entry: unknown): string | null {
  if (typeof entry === 'string') return entry;
  if (entry && typeof entry === 'object' && !Array.isArray(entry)) {
    const keys = Object.keys(entry);
    if (keys.length === 1) return keys[0]!;
  }
  return null;
}

/** What the request lets a person choose: its `availableDecisions` by name, else DECISIONS. */
export function choicesOf(req: ServerRequest): string[] {
  const listed = req.params.availableDecisions;
  if (!Array.isArray(listed)) return [...DECISIONS];
  const names = listed.map(choiceName).filter((n): n is string => n !== null);
  return names.length ? [...new Set(names)] : [...DECISIONS];
}

/** The request's own `availableDecisions` entry for a choice (an object entry goes back as listed). */
export function listedEntry(req: ServerRequest, choice: string): unknown {
  const listed: unknown[] = Array.isArray(req.params.availableDecisions) ? req.params.availableDecisions : [];
  return listed.find((d) => choiceName(d) === choice);
}

/**
 * The command a person should read: 0.171.0 sends `command` as the shell string it will run
 * (`/bin/bash -lc 'touch x'`) and the plain command in `commandActions[].command`; older
 * releases sent the plain command (a string or an argv array) and no actions.
 */
export function plainCommand(p: Record<string, any>): string {
  const actions = Array.isArray(p.commandActions) ? p.commandActions.map((a: any) => a?.command).filter((c: unknown): c is string => typeof c === 'string' && c !== '') : [];
  if (actions.length) return actions.join('; ');
  return shellCommand(p);
}

/** The command as the request gave it (the shell string on 0.171.0). */
export function shellCommand(p: Record<string, any>): string {
  return Array.isArray(p.command) ? p.command.join(' ') : String(p.command ?? '');
}

/** What a person deciding needs to see: the command or change, where, and why. */
export function describeApproval(req: ServerRequest): { title: string; body: string } {
  const p = req.params;
  const reason = typeof p.reason === 'string' && p.reason ? `\nReason: ${p.reason}` : '';
  if (req.method === 'item/commandExecution/requestApproval') {
    const command = plainCommand(p);
    const shell = shellCommand(p);
    const runs = shell && shell !== command ? `\nRuns: ${shell}` : '';
    const amendment = amendmentOf(req);
    const always = amendment ? `\nAccept and always allow: commands starting ${amendment.join(' ')}` : '';
    return { title: `Codex asks to run: ${command}`.slice(0, 500), body: `Command: ${command}\nIn: ${p.cwd ?? '?'}${runs}${reason}${always}` };
  }
  if (req.method === 'item/fileChange/requestApproval') {
    const root = p.grantRoot ? `\nWrite access to: ${p.grantRoot}` : '';
    return { title: 'Codex asks to change files', body: `File change (item ${p.itemId ?? '?'})${root}${reason}` };
  }
  return { title: 'Codex asks for permissions', body: `Permissions: ${JSON.stringify(p.permissions ?? {})}${reason}` };
}

/** The body's last line: how to answer from a terminal, listing exactly the task's choices. */
export function answerLine(choices: readonly string[]): string {
  return `Answer: agent-relay approve TASK_ID ${choices.join(' | ')}`;
}

/** The exec-policy rule `acceptWithExecpolicyAmendment` would add (the argv prefix), if offered. */
function amendmentOf(req: ServerRequest): string[] | null {
  const entry = listedEntry(req, 'acceptWithExecpolicyAmendment') as { acceptWithExecpolicyAmendment?: { execpolicy_amendment?: unknown } } | undefined;
  const argv = entry?.acceptWithExecpolicyAmendment?.execpolicy_amendment;
  return Array.isArray(argv) && argv.every((a: unknown) => typeof a === 'string') ? argv : null;
}
