import type { PostgresPeer } from '../peers/postgres.js';
import type { PeerProc } from '../peers/setup.js';
import type { SystemName } from './drivers.js';

export type Profile = 'quick' | 'full';

/** Sizes and durations of one profile. Quick runs in a few minutes on 2 cores; full is the sizes. */
export interface ProfileConfig {
  fanout: {
    subscriberCounts: number[];
    /** Subscriber counts the peers (NATS, Redis) run at. */
    peerSubscriberCounts: number[];
    rates: number[];
    /** Subscriber counts at which the highest rate with p99 < 50 ms is searched. */
    searchAt: number[];
    /** The same for the peers. */
    peerSearchAt: number[];
    searchSteps: number;
    warmupMs: number;
    durationMs: number;
    drainMs: number;
  };
  durable: { publishers: number; window: number; durationMs: number };
  claims: { claimers: number; tasks: number; contention: number; window: number };
  http: { ingressEvents: number; ingressConcurrency: number; longPolls: number; longPollRounds: number; sseStreams: number; sseRate: number; sseMs: number; compareMs: number; compareRate: number };
  connections: { count: number; heartbeatEveryMs: number; measureMs: number };
  recovery: { messages: number; tasks: number; agents: number; missedEach: number };
}

export const PROFILES: Record<Profile, ProfileConfig> = {
  quick: {
    fanout: {
      subscriberCounts: [1, 10, 100, 250],
      peerSubscriberCounts: [1, 100],
      rates: [1000, 5000, 20000],
      searchAt: [1, 100],
      peerSearchAt: [100],
      searchSteps: 2,
      warmupMs: 500,
      durationMs: 2000,
      drainMs: 3000,
    },
    durable: { publishers: 50, window: 4, durationMs: 3000 },
    claims: { claimers: 50, tasks: 10_000, contention: 3, window: 4 },
    http: { ingressEvents: 5000, ingressConcurrency: 32, longPolls: 500, longPollRounds: 5, sseStreams: 100, sseRate: 200, sseMs: 3000, compareMs: 8000, compareRate: 10 },
    connections: { count: 2000, heartbeatEveryMs: 2000, measureMs: 4000 },
    recovery: { messages: 100_000, tasks: 10_000, agents: 100, missedEach: 1000 },
  },
  full: {
    fanout: {
      subscriberCounts: [1, 10, 100, 1000],
      peerSubscriberCounts: [1, 10, 100, 1000],
      rates: [1000, 5000, 20000],
      searchAt: [1, 10, 100, 1000],
      peerSearchAt: [1, 10, 100, 1000],
      searchSteps: 3,
      warmupMs: 1000,
      durationMs: 5000,
      drainMs: 5000,
    },
    durable: { publishers: 100, window: 4, durationMs: 10_000 },
    claims: { claimers: 50, tasks: 10_000, contention: 3, window: 4 },
    http: { ingressEvents: 30_000, ingressConcurrency: 64, longPolls: 500, longPollRounds: 20, sseStreams: 500, sseRate: 50, sseMs: 10_000, compareMs: 30_000, compareRate: 10 },
    connections: { count: 10_000, heartbeatEveryMs: 10_000, measureMs: 20_000 },
    recovery: { messages: 1_000_000, tasks: 100_000, agents: 100, missedEach: 1000 },
  },
};

export interface Peers {
  nats?: PeerProc;
  redis?: PeerProc;
  /** For the relay on its PostgreSQL store (the durable scenario). */
  postgres?: PostgresPeer;
}

export interface BenchContext {
  profile: Profile;
  cfg: ProfileConfig;
  peers: Peers;
  cpuProf: boolean;
  log: (line: string) => void;
  /** Systems of the fan-out the run includes (peers whose server is missing are left out). */
  systems: SystemName[];
}
