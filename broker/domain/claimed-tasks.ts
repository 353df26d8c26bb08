import { RelayError, isTerminalStatus, type Task, type TaskStatus } from '../../protocol/index.js';

/** Enough to refuse a claim: who holds the task and in what state. */
interface Holder {
  claimedBy: string | null;
  status: TaskStatus;
}

/** Beyond this many tasks held at once, the rest are refused by the store as before. */
const MAX_KNOWN = 100_000;

/** Why a task cannot be claimed: the one wording for the store's refusal and for this cache's. */
export function notClaimable(id: number, holder: Holder): RelayError {
  if (holder.claimedBy) {
    return new RelayError('conflict', `task ${id} is already claimed by ${holder.claimedBy}`, { owner: holder.claimedBy, status: holder.status });
  }
  return new RelayError('conflict', `task ${id} is ${holder.status}: it can no longer be claimed`, { status: holder.status });
}

/**
 * The live tasks this relay knows are held, so that a claim racing for one of them is refused
 * without a write. Under contention most claims lose (three workers racing for each task: two of
 * every three); each used to cost the store a transaction to find that out.
 *
 * Why a refusal from here is as true as the store's: an entry is only ever what a commit said (a
 * published change, or the task as the store read it when it refused a claim, both taken in commit
 * order), and a task leaves the held state only by a release (task.release, or agent.offline
 * releasing an owner's work). While any such write is on its way (`releasing()`), every claim goes
 * to the store. So a claim refused here meets a task that is held by the latest commit any client
 * has been answered about, and is ordered before the release it raced.
 *
 * Terminal tasks are not kept (pruning may delete them: the store then answers notFound). Only a
 * store that is this relay's alone may use it: with several nodes a release acknowledged on
 * another node reaches this one through the feed, later (`enabled` is false there).
 */
export class ClaimedTasks {
  private readonly held = new Map<number, Holder>();

  constructor(
    private readonly enabled: boolean,
    private readonly releasing: () => boolean,
  ) {}

  /** A task as a commit left it (a published change, or the current row a refused claim read). */
  committed(task: Task): void {
    if (!this.enabled) return;
    const claimable = task.status === 'open' && task.claimedBy === null;
    if (claimable || isTerminalStatus(task.status)) this.held.delete(task.id);
    else if (this.held.has(task.id) || this.held.size < MAX_KNOWN) this.held.set(task.id, { claimedBy: task.claimedBy, status: task.status });
  }

  /** The refusal a claim of `id` would meet in the store, if that is certain without asking it. */
  refusal(id: number): RelayError | undefined {
    const holder = this.held.get(id);
    if (holder === undefined || this.releasing()) return undefined;
    return notClaimable(id, holder);
  }
}
