/**
 * Where a relay's group commit spends its time, from its /metrics: the event loop's wait for each
 * commit (agent_relay_commit_seconds), and the SQLite writer thread's share of it, its writes and
 * its COMMIT with the sync (agent_relay_store_apply_seconds, agent_relay_store_commit_seconds).
 * What is left of the wait is queueing behind the batch before it and the trips between threads.
 */
export interface CommitShare {
  commitsPerSec: number;
  /** Writes the commits carried (deferred bookkeeping too). */
  writes: number;
  writesPerCommit: number;
  /** Averages per group commit, in ms. */
  waitMs: number;
  writerApplyMs: number;
  writerCommitMs: number;
}

type Sums = Record<string, number>;

const SERIES = ['agent_relay_commit_seconds', 'agent_relay_commit_batch_size', 'agent_relay_store_apply_seconds', 'agent_relay_store_commit_seconds'];

export async function scrapeCommitSums(relayUrl: string): Promise<Sums> {
  const text = await (await fetch(`${relayUrl}/metrics`)).text();
  const sums: Sums = {};
  for (const line of text.split('\n')) {
    const [name, value] = line.split(' ');
    if (name && value && SERIES.some((s) => name === `${s}_sum` || name === `${s}_count`)) sums[name] = Number(value);
  }
  return sums;
}

/** One line of it: "N commits/s of W writes; each waited X ms, of which ...". */
export function describeCommits(c: CommitShare): string {
  return `${c.commitsPerSec} commits/s of ${c.writesPerCommit} writes; each commit waited ${c.waitMs} ms, of which the writer thread's writes ${c.writerApplyMs} ms and COMMIT ${c.writerCommitMs} ms`;
}

/** A claims race: how many of its attempts reached the store, and where its commits spent their time. */
export function describeClaimWrites(attempts: number, c: CommitShare): string {
  return `${c.writes} writes reached the store for ${attempts} attempts (the rest were refused from the relay's record of held tasks without a write), in ${describeCommits(c)}`;
}

/** The share over what happened between two scrapes, `seconds` apart; undefined without commits. */
export function commitShare(before: Sums, after: Sums, seconds: number): CommitShare | undefined {
  const d = (name: string) => (after[name] ?? 0) - (before[name] ?? 0);
  const commits = d('agent_relay_commit_seconds_count');
  if (commits <= 0) return undefined;
  const ms = (name: string) => Math.round((d(`${name}_sum`) / commits) * 1e6) / 1e3;
  return {
    commitsPerSec: Math.round(commits / seconds),
    writes: d('agent_relay_commit_batch_size_sum'),
    writesPerCommit: Math.round((d('agent_relay_commit_batch_size_sum') / Math.max(1, d('agent_relay_commit_batch_size_count'))) * 10) / 10,
    waitMs: ms('agent_relay_commit_seconds'),
    writerApplyMs: ms('agent_relay_store_apply_seconds'),
    writerCommitMs: ms('agent_relay_store_commit_seconds'),
  };
}
