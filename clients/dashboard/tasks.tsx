import { useEffect, useState } from 'preact/hooks';
import { APPROVAL_TASK_KIND, CHOICE_LABELS, taskChoices } from '../../protocol/approvals.js';
import type { CallbackDelivery, RelayEvent, Task, TaskStatus } from '../../protocol/common.js';
import { ago, clock, useAction } from './hooks.js';
import type { DashboardStore } from './store.js';

const COLUMNS: TaskStatus[] = ['open', 'claimed', 'in_progress', 'blocked', 'done', 'failed', 'canceled'];

function isApproval(t: Task): boolean {
  return t.meta.kind === APPROVAL_TASK_KIND;
}

function Progress({ value }: { value: number }) {
  return (
    <div class="progress" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={value} aria-label={`${value}% done`}>
      <div style={{ width: `${value}%` }} />
    </div>
  );
}

/** Claim (as this tab's operator agent), then act as the owner with the claim token. */
async function claimAndUpdate(store: DashboardStore, task: Task, update: { status?: 'in_progress' | 'blocked' | 'done' | 'failed'; progress?: number; note?: string }) {
  const operator = await store.asOperator();
  let token = task.claimedBy === operator.agent?.id ? task.attempts : null;
  if (token === null) token = (await operator.call('task/claim', { id: task.id })).claimToken;
  await operator.call('task/update', { id: task.id, claimToken: token, ...update });
}

function TaskActions({ store, task }: { store: DashboardStore; task: Task }) {
  const [error, run] = useAction();
  const [progress, setProgress] = useState(task.progress);
  const closed = ['done', 'failed', 'canceled'].includes(task.status);
  const mine = (id: string | null) => id !== null && id === store.operatorId();
  if (closed) return null;
  return (
    <div class="actions">
      {task.status === 'open' && (
        <button type="button" onClick={() => run('claim', async () => (await store.asOperator()).call('task/claim', { id: task.id }))}>
          Claim
        </button>
      )}
      {mine(task.claimedBy) && (
        <>
          <button type="button" onClick={() => run('release', async () => (await store.asOperator()).call('task/release', { id: task.id, claimToken: task.attempts }))}>
            Release
          </button>
          <label class="inline">
            progress
            <input type="number" min={0} max={100} value={progress} aria-label="Progress percent" onInput={(e) => setProgress(Number(e.currentTarget.value))} />
          </label>
          <button type="button" onClick={() => run('progress', () => claimAndUpdate(store, task, { status: 'in_progress', progress }))}>
            Update
          </button>
          <button type="button" onClick={() => run('blocked', () => claimAndUpdate(store, task, { status: 'blocked' }))}>
            Blocked
          </button>
          <button type="button" onClick={() => run('done', () => claimAndUpdate(store, task, { status: 'done' }))}>
            Done
          </button>
        </>
      )}
      <button type="button" class="danger" onClick={() => run('cancel', () => store.call('task/update', { id: task.id, status: 'canceled', note: 'canceled from the dashboard' }))}>
        Cancel
      </button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

export function TaskDetails({ store, id, onClose }: { store: DashboardStore; id: number; onClose: () => void }) {
  const [detail, setDetail] = useState<{ events: RelayEvent[]; callbacks: CallbackDelivery[] } | null>(null);
  const [error, run] = useAction();
  const task = store.tasks.get(id);
  useEffect(() => void run('task', async () => setDetail(await store.call('task/get', { id }))), [id, task?.updatedAt]);
  if (!task) return null;
  return (
    <aside class="drawer" aria-label={`Task ${id}`} onKeyDown={(e) => e.key === 'Escape' && onClose()}>
      <header>
        <h3>
          Task #{task.id}: {task.title}
        </h3>
        <button type="button" onClick={onClose} aria-label="Close task">
          ✕
        </button>
      </header>
      <p>
        <span class={`chip status ${task.status}`}>{task.status}</span> {task.claimedBy ? `owner ${task.claimedBy}` : 'unclaimed'} · source {task.source} · target {task.target}
        {task.dedupeKey && ` · key ${task.dedupeKey} ×${task.occurrences}`}
      </p>
      <Progress value={task.progress} />
      {task.body && <pre class="body">{task.body}</pre>}
      <TaskActions store={store} task={task} />
      {error && <p class="error">{error}</p>}
      <h4>Events</h4>
      <ol class="events">
        {(detail?.events ?? []).map((e) => (
          <li key={e.id}>
            <span class="time">{clock(e.at)}</span> {e.kind} {e.agentId ?? ''} <span class="dim">{Object.keys(e.data).length ? JSON.stringify(e.data) : ''}</span>
          </li>
        ))}
      </ol>
      <h4>Callbacks</h4>
      {detail?.callbacks.length ? (
        <ol class="callbacks">
          {detail.callbacks.map((c) => (
            <li key={c.webhookId} class={c.state}>
              <span class={`chip ${c.state}`}>{c.state === 'dead' ? 'dead letter' : c.state}</span> event #{c.eventId} · {c.attempts} attempt(s)
              {c.lastStatus !== null && ` · HTTP ${c.lastStatus}`}
              {c.lastError && ` · ${c.lastError}`} <span class="dim">{c.url}</span>
            </li>
          ))}
        </ol>
      ) : (
        <p class="dim">none</p>
      )}
    </aside>
  );
}

export function TaskBoard({ store, onOpen }: { store: DashboardStore; onOpen: (id: number) => void }) {
  const tasks = [...store.tasks.values()].filter((t) => !isApproval(t) || ['done', 'failed', 'canceled'].includes(t.status));
  return (
    <section class="panel tasks-panel" aria-labelledby="tasks-h">
      <header>
        <h2 id="tasks-h">
          Tasks <span class="count">{tasks.length}</span>
        </h2>
      </header>
      <div class="board">
        {COLUMNS.map((status) => {
          const col = tasks.filter((t) => t.status === status).sort((a, b) => b.updatedAt - a.updatedAt);
          return (
            <div class="column" data-status={status} key={status}>
              <h3>
                {status.replace('_', ' ')} <span class="count">{col.length}</span>
              </h3>
              <ul>
                {col.slice(0, 100).map((t) => (
                  <li key={t.id} class="task" data-task-id={t.id}>
                    <button type="button" class="row" onClick={() => onOpen(t.id)} aria-label={`Task ${t.id}: ${t.title}, ${t.status}, ${t.progress}%`}>
                      <span class="title">
                        #{t.id} {t.title}
                      </span>
                      <Progress value={t.progress} />
                      <span class="dim">
                        {t.claimedBy ?? 'unclaimed'} · {t.source}
                        {t.dedupeKey ? ` · ${t.dedupeKey} ×${t.occurrences}` : ''} · {ago(t.updatedAt)}
                      </span>
                    </button>
                  </li>
                ))}
              </ul>
            </div>
          );
        })}
      </div>
    </section>
  );
}

/** Pending Codex approvals: shown first and answered in one click. */
export function Approvals({ store }: { store: DashboardStore }) {
  const [error, run] = useAction();
  const pending = [...store.tasks.values()].filter((t) => isApproval(t) && !['done', 'failed', 'canceled'].includes(t.status));
  if (pending.length === 0) return null;
  const answer = (t: Task, decision: string) =>
    run(decision, async () => {
      if (decision === 'cancel') await store.call('task/update', { id: t.id, status: 'canceled', note: 'cancel' });
      else await claimAndUpdate(store, t, { status: 'done', note: decision });
    });
  return (
    <section class="panel approvals" aria-labelledby="approvals-h">
      <header>
        <h2 id="approvals-h">
          Pending approvals <span class="count">{pending.length}</span>
        </h2>
      </header>
      <ul>
        {pending.map((t) => (
          <li key={t.id} class="approval" data-task-id={t.id}>
            <strong>{t.title}</strong>
            {t.body && <pre class="body">{t.body.split('\n\nAnswer:')[0]}</pre>}
            <div class="dim">
              from {String(t.meta.agentId ?? t.source)} · {ago(t.createdAt)}
            </div>
            {/* Only the task's choices: the adapter would have to map any other. */}
            <div class="actions">
              {taskChoices(t).map((c) => (
                <button type="button" key={c} class={c === 'accept' ? 'primary' : c === 'cancel' ? 'danger' : undefined} onClick={() => answer(t, c)}>
                  {CHOICE_LABELS[c] ?? c}
                </button>
              ))}
            </div>
          </li>
        ))}
      </ul>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
