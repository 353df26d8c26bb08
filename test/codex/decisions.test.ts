import t from 'tap';
import { choicesOf, describeApproval } from '../../adapters/codex/approvals.js';
import { DECISIONS } from '../../protocol/approvals.js';
import { answerFor, decisionOf, offeredDecision } from '../../adapters/codex/decisions.js';

/** The pure half of approvals: what a request offers, and what a person's decision becomes. */

const REAL = ['accept', { acceptWithExecpolicyAmendment: { execpolicy_amendment: ['touch', 'x'] } }, 'cancel'];
const command = (params: Record<string, unknown>) => ({ id: 0, method: 'item/commandExecution/requestApproval', params: { threadId: 'th', turnId: 'tu', ...params } });

t.test('choicesOf: availableDecisions by name; the four words when absent or empty', async (t) => {
  t.same(choicesOf(command({ availableDecisions: REAL })), ['accept', 'acceptWithExecpolicyAmendment', 'cancel']);
  t.same(choicesOf(command({})), [...DECISIONS]);
  t.same(choicesOf(command({ availableDecisions: [] })), [...DECISIONS]);
  t.same(choicesOf(command({ availableDecisions: ['accept', 7, { a: 1, b: 2 }, 'cancel'] })), ['accept', 'cancel'], 'entries that name nothing are skipped');
});

t.test('offeredDecision: never broader than asked; a "no" stays a "no"', async (t) => {
  const real = ['accept', 'acceptWithExecpolicyAmendment', 'cancel'];
  const cases: Array<[string[], string, string, boolean]> = [
    [real, 'accept', 'accept', false],
    [real, 'acceptWithExecpolicyAmendment', 'acceptWithExecpolicyAmendment', false],
    [real, 'acceptForSession', 'accept', true],
    [real, 'decline', 'cancel', true],
    [real, 'cancel', 'cancel', false],
    [['acceptForSession', 'decline'], 'accept', 'decline', true], // no narrower yes: refuse
    [['accept', 'decline'], 'cancel', 'decline', true],
    [real, 'somethingNew', 'cancel', true],
  ];
  for (const [choices, asked, choice, mapped] of cases) t.same(offeredDecision(choices, asked), { choice, mapped, offered: true }, `${asked} of ${choices.join(',')} → ${choice}`);
  t.same(offeredDecision(['accept'], 'decline'), { choice: 'decline', mapped: true, offered: false }, 'no refusal offered at all: decline, flagged');
});

t.test('answerFor: the listed entry as listed; permissions keep their own shape', async (t) => {
  const req = command({ availableDecisions: REAL });
  t.same(answerFor(req, 'acceptWithExecpolicyAmendment'), { decision: REAL[1] });
  t.same(answerFor(req, 'cancel'), { decision: 'cancel' });
  t.same(answerFor(command({}), 'decline'), { decision: 'decline' });
  const perm = { id: 1, method: 'item/permissions/requestApproval', params: { permissions: { fileSystem: { write: ['/p'] } } } };
  t.same(answerFor(perm, 'acceptForSession'), { permissions: { fileSystem: { write: ['/p'] } }, scope: 'session' });
  t.same(answerFor(perm, 'cancel'), { permissions: {} });
});

t.test('decisionOf: a note naming a choice (any case) wins; else the status', async (t) => {
  const task = (status: string, choices?: string[]) => ({ status, meta: choices ? { choices } : {} }) as any;
  const ev = (note?: string) => ({ data: note === undefined ? {} : { note } }) as any;
  t.equal(decisionOf(task('done', ['accept', 'acceptWithExecpolicyAmendment', 'cancel']), ev('AcceptWithExecPolicyAmendment')), 'acceptWithExecpolicyAmendment');
  t.equal(decisionOf(task('done'), ev('looks good')), 'accept');
  t.equal(decisionOf(task('failed'), ev()), 'decline');
  t.equal(decisionOf(task('canceled'), ev('canceled from the dashboard')), 'cancel');
  t.equal(decisionOf(task('open'), ev('accept')), null);
});

t.test('describeApproval: the plain command from commandActions, the shell string beside it', async (t) => {
  const d = describeApproval(command({ command: "/bin/bash -lc 'touch x'", cwd: '/p', commandActions: [{ type: 'unknown', command: 'touch x' }], availableDecisions: REAL }));
  t.equal(d.title, 'Codex asks to run: touch x');
  t.equal(d.body, "Command: touch x\nIn: /p\nRuns: /bin/bash -lc 'touch x'\nAccept and always allow: commands starting touch x");
  t.same(describeApproval(command({ command: ['npm', 'test'], cwd: '/p' })), { title: 'Codex asks to run: npm test', body: 'Command: npm test\nIn: /p' }, 'older: an argv, no actions');
});
