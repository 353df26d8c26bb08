import { readFileSync } from 'node:fs';
import { writeJsonAtomic } from '../../clients/atomic-json.js';

/** A turn the adapter started and has not yet seen end. */
export interface InFlightTurn {
  /** Null until turn/start answered (the socket may have dropped before it did). */
  turnId: string | null;
  messageIds: number[];
  /** The delivered text, to recognise the turn in thread/resume after a drop. */
  marker: string;
}

/** What survives an adapter restart, so it neither loses nor repeats a delivery. */
export interface AdapterState {
  threadId: string | null;
  agentToken: string | null;
  /** Highest message id carried by an accepted turn: the relay resumes after it. */
  cursor: number;
  /** Recently delivered ids (a guard against a replay overlapping what was delivered). */
  delivered: number[];
  inFlight: InFlightTurn | null;
  /** Ids delivered a second time after the app-server died under their turn (never a third). */
  redelivered: number[];
  /** Approval requests forwarded as relay tasks: "threadId/turnId/request id" → task id. */
  approvals: Record<string, number>;
}

const KEEP_DELIVERED = 1000;

export function emptyState(): AdapterState {
  return { threadId: null, agentToken: null, cursor: 0, delivered: [], inFlight: null, redelivered: [], approvals: {} };
}

export function loadState(path: string): AdapterState {
  try {
    return { ...emptyState(), ...(JSON.parse(readFileSync(path, 'utf8')) as Partial<AdapterState>) };
  } catch {
    return emptyState();
  }
}

/** Write-then-rename: a crash mid-write leaves the previous state, never half a file. */
export function saveState(path: string, state: AdapterState): void {
  writeJsonAtomic(path, { ...state, delivered: state.delivered.slice(-KEEP_DELIVERED), redelivered: state.redelivered.slice(-KEEP_DELIVERED) }, { mode: 0o600 });
}
