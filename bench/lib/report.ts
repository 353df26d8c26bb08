import type { ClaimsResult } from '../scenarios/claims.js';
import { WARM_CONNECTIONS, type ConnectionsResult } from '../scenarios/connections.js';
import type { DurableResult } from '../scenarios/durable.js';
import type { FanoutResult, FanoutStep } from '../scenarios/fanout.js';
import type { HttpResult } from '../scenarios/http.js';
import type { RecoveryResult } from '../scenarios/recovery.js';
import type { ProfileConfig } from './context.js';
import { SYSTEM_LABELS, SYSTEMS, type SystemName } from './drivers.js';
import { fmtNum, mdTable, textTable, type Table } from './table.js';
import { BODY_BYTES } from './payload.js';
import { describeClaimWrites } from './commit-share.js';

export interface BenchMeta {
  profile: string;
  command: string;
  date: string;
  machine: { cpu: string; cores: number; memGiB: number; kernel: string; node: string };
  loadavgStart: number[];
  loadavgEnd: number[];
  peers: Record<string, string>;
  sizes: ProfileConfig;
  durationSec: number;
}

export interface BenchResults {
  meta: BenchMeta;
  errors: Record<string, string>;
  fanout?: FanoutResult;
  durable?: DurableResult;
  claims?: ClaimsResult;
  http?: HttpResult;
  connections?: ConnectionsResult;
  recovery?: RecoveryResult;
}

export interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

export interface Report {
  text: string;
  markdown: string;
  ratios: Record<string, number | null>;
  targets: Target[];
}

const ratio = (a: number | null | undefined, b: number | null | undefined): number | null => (a && b ? Math.round((a / b) * 1000) / 1000 : null);
const pct = (r: number | null) => (r === null ? '-' : `${(r * 100).toFixed(0)}%`);
const x = (r: number | null) => (r === null ? '-' : `${r.toFixed(2)}×`);

function bestDelivered(steps: FanoutStep[], system: SystemName, n: number): number | null {
  const xs = steps.filter((s) => s.system === system && s.n === n && !s.skipped).map((s) => s.deliveredPerSec);
  return xs.length ? Math.max(...xs) : null;
}

function at(steps: FanoutStep[], system: SystemName, n: number, rate: number): FanoutStep | undefined {
  return steps.find((s) => s.system === system && s.n === n && s.rate === rate && !s.search);
}

/** `previous`: the last recorded run of the same profile (bench/results/latest-<profile>.json), if any. */
export function buildReport(r: BenchResults, previous?: BenchResults | null): Report {
  const tables: Table[] = [];
  const ratios: Record<string, number | null> = {};
  const sizes = r.meta.sizes;

  if (r.fanout) {
    const f = r.fanout;
    const systems = SYSTEMS.filter((s) => f.steps.some((st) => st.system === s));
    const ns = [...new Set(f.steps.map((s) => s.n))].sort((a, b) => a - b);
    const rows: Table['rows'] = [];
    for (const n of ns) {
      const rates = [...new Set(f.steps.filter((s) => s.n === n).map((s) => s.rate))].sort((a, b) => a - b);
      for (const rate of rates) {
        for (const system of systems) {
          const s = f.steps.find((st) => st.system === system && st.n === n && st.rate === rate);
          if (!s) continue;
          if (s.skipped) rows.push([`N=${n}`, rate, SYSTEM_LABELS[system], 'skipped', '-', '-', '-', '-', 'no']);
          else
            rows.push([
              `N=${n}`,
              rate,
              SYSTEM_LABELS[system],
              s.deliveredPerSec,
              `${(s.deliveredFraction * 100).toFixed(1)}%`,
              fmtNum(s.latency.p50),
              fmtNum(s.latency.p99),
              fmtNum(s.latency.p999),
              s.held ? 'yes' : 'no',
            ]);
        }
      }
    }
    tables.push({
      title: `1. Fan-out: 1 publisher → N subscribers, ${BODY_BYTES}-byte bodies, offered msgs/s (delivered = messages × subscribers per second; latency = publish-to-delivery, ms)`,
      headers: ['N', 'offered/s', 'system', 'delivered/s', 'arrived', 'p50', 'p99', 'p99.9', 'held'],
      rows,
      note: `held = every message arrived and p99 < 50 ms. Quick profile: N=${sizes.fanout.subscriberCounts.join(', ')} for the relay and bare uWS, N=${sizes.fanout.peerSubscriberCounts.join(', ')} for peers; rates above a saturated one are skipped. Each step: ${sizes.fanout.warmupMs} ms warm-up, ${sizes.fanout.durationMs} ms measured.`,
    });
    const mh = f.maxHeld;
    if (mh.length) {
      const mns = [...new Set(mh.map((m) => m.n))].sort((a, b) => a - b);
      tables.push({
        title: '1b. Highest offered rate held with p99 < 50 ms (msgs/s; searched past the fixed rates)',
        headers: ['system', ...mns.map((n) => `N=${n}`), ...mns.map((n) => `deliveries/s N=${n}`)],
        rows: systems.map((s) => [
          SYSTEM_LABELS[s],
          ...mns.map((n) => mh.find((m) => m.system === s && m.n === n)?.rate ?? '-'),
          ...mns.map((n) => {
            const rt = mh.find((m) => m.system === s && m.n === n)?.rate;
            return rt ? rt * n : '-';
          }),
        ]),
      });
    }
    // Ratios: relay vs the transport ceiling, the disk ceiling and the peers.
    const ratioRows: Table['rows'] = [];
    for (const n of ns) {
      const relayBest = bestDelivered(f.steps, 'relay', n);
      const relayHeld = mh.find((m) => m.system === 'relay' && m.n === n)?.rate ?? null;
      for (const other of systems.filter((s) => s !== 'relay')) {
        const best = bestDelivered(f.steps, other, n);
        if (best === null) continue;
        const held = mh.find((m) => m.system === other && m.n === n)?.rate ?? null;
        const s5 = at(f.steps, 'relay', n, 5000);
        const o5 = at(f.steps, other, n, 5000);
        const r1 = ratio(relayBest, best);
        const r2 = ratio(relayHeld, held);
        const r3 = s5 && o5 && !s5.skipped && !o5.skipped ? ratio(s5.latency.p99, o5.latency.p99) : null;
        ratios[`fanout.N${n}.relay/${other}.bestDelivered`] = r1;
        ratios[`fanout.N${n}.relay/${other}.maxHeldRate`] = r2;
        ratios[`fanout.N${n}.relay/${other}.p99At5k`] = r3;
        ratioRows.push([`N=${n}`, `relay / ${SYSTEM_LABELS[other]}`, x(r1), x(r2), x(r3)]);
      }
      const disk = r.durable?.sqliteFanout.find((c) => c.recipients === n);
      if (disk) {
        const rd = ratio(relayBest, disk.msgsPerSec * n);
        ratios[`fanout.N${n}.relay/sqliteRows.deliveries`] = rd;
        ratioRows.push([`N=${n}`, 'relay / raw SQLite rows (disk ceiling)', x(rd), '-', '-']);
      }
    }
    tables.push({
      title: '1c. Fan-out ratios (relay ÷ other, same run)',
      headers: ['N', 'ratio', 'best delivered/s', 'max rate held', 'p99 at 5k/s'],
      rows: ratioRows,
      note: 'Above 1× the relay is higher (for p99: slower). The disk ceiling is raw better-sqlite3 writing the same rows, batched: the message with its recipients, and the push span of each recipient extended once per commit.',
    });
  }

  if (r.durable) {
    const d = r.durable;
    tables.push({
      title: `2. Durable publish: ${sizes.durable.publishers} publishers × ${sizes.durable.window} in flight, acknowledged sends/s`,
      headers: ['system', 'durability', 'acked/s', 'ack p50 ms', 'ack p99 ms', 'server CPU µs/ack', 'load CPU µs/ack', 'cores busy', 'errors'],
      rows: [
        ...d.runs.map((run) => [
          run.name,
          run.durability,
          run.ackedPerSec,
          fmtNum(run.latency.p50),
          fmtNum(run.latency.p99),
          run.cpu ? fmtNum(run.cpu.serverUsPerAck) : '-',
          run.cpu ? fmtNum(run.cpu.generatorsUsPerAck) : '-',
          run.cpu ? fmtNum(run.cpu.machineBusyCores) : '-',
          run.errors,
        ]),
        ...d.sqlite.map((c) => [`raw better-sqlite3, ${c.msgsPerCommit} msg/commit`, `synchronous=${c.sync}`, c.msgsPerSec, '-', '-', '-', '-', '-', 0]),
        ...(d.fsync
          ? [
              [
                `raw fdatasync after a ${d.fsync.bytesPerAppend}-byte append, ×${d.fsync.syncs}`,
                'fdatasync',
                `${fmtNum(d.fsync.syncsPerSec)} syncs/s`,
                fmtNum(d.fsync.latency.p50),
                fmtNum(d.fsync.latency.p99),
                '-',
                '-',
                '-',
                0,
              ],
            ]
          : []),
      ],
      note: "Relay sends go to one registered agent: one message row each, its recipient in the row. Raw better-sqlite3 writes the same rows with nothing else in the process (1 msg/commit: no group commit; 250: the disk's batched limit). Raw fdatasync: one after another on a small file beside the relay databases, nothing else in the process; its p99 enters the latency target. CPU per acknowledged send, over the run's window (from /proc): the server's process with all its threads (for the relay on PostgreSQL, the relay alone, not PostgreSQL's backends) and the two load-generator processes together; cores busy: the whole machine's average, of all its cores.",
    });
    const fullRun = d.runs.find((x) => x.system === 'relay' && x.durability.includes('FULL'));
    const redisAlwaysRun = d.runs.find((x) => x.durability.includes('always'));
    const full = fullRun?.ackedPerSec;
    const onPostgres = d.runs.find((x) => x.system === 'relay' && x.durability.startsWith('PostgreSQL'))?.ackedPerSec;
    const normal = d.runs.find((x) => x.system === 'relay' && x.durability.includes('NORMAL'))?.ackedPerSec;
    const js = d.runs.find((x) => x.system === 'jetstream')?.ackedPerSec;
    const redisAlways = redisAlwaysRun?.ackedPerSec;
    const cpuRatio = ratio(fullRun?.cpu?.serverUsPerAck, redisAlwaysRun?.cpu?.serverUsPerAck);
    const sq1 = d.sqlite.find((c) => c.sync === 'FULL' && c.msgsPerCommit === 1)?.msgsPerSec;
    const sqB = d.sqlite.find((c) => c.sync === 'FULL' && c.msgsPerCommit > 1)?.msgsPerSec;
    const sqBN = d.sqlite.find((c) => c.sync === 'NORMAL' && c.msgsPerCommit > 1)?.msgsPerSec;
    Object.assign(ratios, {
      'durable.relayFULL/jetstream': ratio(full, js),
      'durable.relayFULL/redisXaddAlways': ratio(redisAlways ? full : null, redisAlways),
      'durable.relayFULL/sqliteBatchedFULL': ratio(full, sqB),
      'durable.relayNORMAL/sqliteBatchedNORMAL': ratio(normal, sqBN),
      'durable.relayFULL/sqlite1PerCommitFULL (group commit gain)': ratio(full, sq1),
      'durable.relayNORMAL/relayFULL': ratio(normal, full),
      'durable.relayPostgres/relayFULL': ratio(onPostgres, full),
      'durable.relayFULL/redisXaddAlways server CPU per ack': cpuRatio,
    });
    tables.push({
      title: '2b. Durable publish ratios',
      headers: ['ratio', 'value'],
      rows: [
        ['relay FULL ÷ NATS JetStream', x(ratio(full, js))],
        ['relay FULL ÷ Redis XADD appendfsync always', x(ratio(full, redisAlways))],
        ['relay FULL ÷ raw SQLite FULL batched (disk ceiling)', pct(ratio(full, sqB))],
        ['relay NORMAL ÷ raw SQLite NORMAL batched', pct(ratio(normal, sqBN))],
        ['relay FULL ÷ raw SQLite FULL 1 msg/commit (what group commit buys)', x(ratio(full, sq1))],
        ['relay NORMAL ÷ relay FULL', x(ratio(normal, full))],
        ['relay on PostgreSQL ÷ relay on SQLite FULL (issue 18 aims ≥ 0.5×)', x(ratio(onPostgres, full))],
        ['server CPU per acknowledged send: relay FULL ÷ Redis XADD appendfsync always (above 1×: the relay spends more)', x(cpuRatio)],
      ],
    });
    const withCommits = d.runs.filter((run) => run.commits);
    if (withCommits.length > 0) {
      tables.push({
        title: "2c. Where the relay's group commits spent their time (SQLite runs, averages per commit)",
        headers: ['run', 'commits/s', 'writes/commit', 'event loop waited ms', 'writer: writes ms', 'writer: COMMIT ms', 'rest ms'],
        rows: withCommits.map((run) => {
          const c = run.commits!;
          return [
            run.name,
            c.commitsPerSec,
            fmtNum(c.writesPerCommit),
            fmtNum(c.waitMs),
            fmtNum(c.writerApplyMs),
            fmtNum(c.writerCommitMs),
            fmtNum(Math.round((c.waitMs - c.writerApplyMs - c.writerCommitMs) * 1000) / 1000),
          ];
        }),
        note: "From the relay's /metrics over the run: the event loop's wait for a commit (agent_relay_commit_seconds) and the SQLite writer thread's share of it, its writes and its COMMIT (with the WAL's fsync at FULL). The rest is waiting behind the batch before it (two are handed over at once) and the trips between the threads: structured clones both ways, and each thread's event loop taking the message when it is free.",
      });
    }
  }

  if (r.claims) {
    const c = r.claims;
    tables.push({
      title: `3. Claims: ${c.claimers} claimers racing over ${c.tasks} tasks (each task raced by ${c.contention})`,
      headers: [
        'claims/s',
        'attempts/s',
        'conflicts',
        'claim p50 ms',
        'claim p99 ms',
        'double claims',
        'double in db',
        'unclaimed',
        'errors',
        'relay CPU µs/claim',
        'claimers CPU µs/claim',
        'cores busy',
      ],
      rows: [
        [
          c.claimsPerSec,
          c.attemptsPerSec,
          c.conflicts,
          fmtNum(c.latency.p50),
          fmtNum(c.latency.p99),
          c.doubleClaims,
          c.doubleClaimsInDb,
          c.unclaimed,
          c.errors,
          c.cpu ? fmtNum(c.cpu.serverUsPerClaim) : '-',
          c.cpu ? fmtNum(c.cpu.generatorsUsPerClaim) : '-',
          c.cpu ? fmtNum(c.cpu.machineBusyCores) : '-',
        ],
      ],
      note: `Tasks created through task/create in JSON-RPC batches of 100: ${c.createPerSec}/s.${c.commits ? ` During the race ${describeClaimWrites(c.attempts, c.commits)}.` : ''}`,
    });
  }

  if (r.http) {
    const h = r.http;
    tables.push({
      title: '4. HTTP',
      headers: ['what', 'rate', 'p50 ms', 'p99 ms', 'p99.9 ms', 'detail'],
      rows: [
        [
          'webhook ingress (Standard Webhooks signed, dedupe, 1/10 replays)',
          `${fmtNum(h.ingress.eventsPerSec)} events/s`,
          fmtNum(h.ingress.latency.p50),
          fmtNum(h.ingress.latency.p99),
          fmtNum(h.ingress.latency.p999),
          `${h.ingress.concurrency} concurrent; ${Object.entries(h.ingress.outcomes)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}`,
        ],
        [
          `${h.longPoll.waiters} long-polls woken by a send (wake latency)`,
          `${h.longPoll.wakes} wakes`,
          fmtNum(h.longPoll.latency.p50),
          fmtNum(h.longPoll.latency.p99),
          fmtNum(h.longPoll.latency.p999),
          `${h.longPoll.rounds} rounds, broadcast to all`,
        ],
        [
          `SSE fan-out, ${h.sse.streams} streams at ${h.sse.rate} msgs/s`,
          `${fmtNum(h.sse.deliveredPerSec)} events/s`,
          fmtNum(h.sse.latency.p50),
          fmtNum(h.sse.latency.p99),
          fmtNum(h.sse.latency.p999),
          `${(h.sse.deliveredFraction * 100).toFixed(1)}% arrived`,
        ],
        [`same ${h.compare.sends} sends (${h.compare.rate}/s): 2 s poll`, '-', fmtNum(h.compare.poll.p50), fmtNum(h.compare.poll.p99), fmtNum(h.compare.poll.p999), `${h.compare.poll.count} seen`],
        ['  … long-poll', '-', fmtNum(h.compare.longPoll.p50), fmtNum(h.compare.longPoll.p99), fmtNum(h.compare.longPoll.p999), `${h.compare.longPoll.count} seen`],
        ['  … WebSocket push', '-', fmtNum(h.compare.push.p50), fmtNum(h.compare.push.p99), fmtNum(h.compare.push.p999), `${h.compare.push.count} seen`],
      ],
    });
    ratios['http.poll2s/push.p50'] = ratio(h.compare.poll.p50, h.compare.push.p50);
    ratios['http.longPoll/push.p50'] = ratio(h.compare.longPoll.p50, h.compare.push.p50);
  }

  if (r.connections) {
    const c = r.connections;
    tables.push({
      title: `5. Connections: ${c.connections} idle WebSocket agents, registered and heartbeating`,
      headers: [
        'relay RSS before',
        'after',
        'per connection',
        'of which JS heap',
        'before GC',
        'idle CPU',
        'heartbeats/s',
        'heartbeat CPU',
        'CPU/heartbeat',
        'hb p50 ms',
        'hb p99 ms',
        '10k agents @30 s',
      ],
      rows: [
        [
          `${c.rssBaselineMiB} MiB`,
          `${c.rssConnectedMiB} MiB`,
          `${(c.bytesPerConnection / 1024).toFixed(1)} KiB`,
          `${(c.heapBytesPerConnection / 1024).toFixed(1)} KiB`,
          `${(c.bytesPerConnectionBeforeGc / 1024).toFixed(1)} KiB`,
          `${c.idleCpuPct}%`,
          c.heartbeatsPerSec,
          `${c.heartbeatCpuPct}%`,
          `${c.cpuUsPerHeartbeat} µs`,
          fmtNum(c.heartbeatLatency.p50),
          fmtNum(c.heartbeatLatency.p99),
          `${c.projected10kAt30sPct}% of a core`,
        ],
      ],
      note: `Memory is the relay's RSS growth from ${WARM_CONNECTIONS} warm connections to ${c.connections}, divided by the connections added, each measured after a full GC forced through the inspector (before GC: the same without it). CPU is % of one core. Heartbeat every ${c.heartbeatEveryMs / 1000} s per agent.`,
    });
  }

  if (r.recovery) {
    const v = r.recovery;
    tables.push({
      title: `6. Recovery: ${fmtNum(v.messages)} messages and ${fmtNum(v.tasks)} tasks stored (${v.dbMiB} MiB)`,
      headers: ['restart to healthy', 'empty-db start', 'agents', 'missed each', 'all caught up in', 'caught up', 'catch-up msgs/s'],
      rows: [[`${v.restartMs} ms`, `${v.emptyStartMs} ms`, v.agents, v.missedEach, `${v.catchUpMs} ms`, `${v.caughtUp}/${v.agents}`, v.catchUpMsgsPerSec]],
      note: 'Restart = spawning `node --import tsx broker/main.ts` until /healthz answers (the empty-database start is the process and module start-up alone).',
    });
  }

  const vsPrevious = againstPrevious(r, previous);
  if (vsPrevious?.table) tables.push(vsPrevious.table);
  const targets = issueTargets(r, vsPrevious);

  const m = r.meta;
  const head = [
    `Agent Relay bench — ${m.profile} profile`,
    `date: ${m.date}   command: ${m.command}   duration: ${m.durationSec} s`,
    `machine: ${m.machine.cpu}, ${m.machine.cores} cores, ${m.machine.memGiB} GiB, Linux ${m.machine.kernel}, Node ${m.machine.node}; load average start ${m.loadavgStart.map((v) => v.toFixed(2)).join(' ')}, end ${m.loadavgEnd.map((v) => v.toFixed(2)).join(' ')}`,
    `peers: ${
      Object.entries(m.peers)
        .map(([k, v]) => `${k} ${v}`)
        .join('; ') || 'none'
    }`,
  ];
  // The bench uses both cores itself (about 2-3 of load); more than that at the end means something else ran too.
  const busy = m.loadavgStart[0]! >= 1.5 || m.loadavgEnd[0]! > m.machine.cores + 1.5;
  const busyNote = busy
    ? `WARNING: the machine was busy (load average ${m.loadavgStart[0]!.toFixed(2)} at start, ${m.loadavgEnd[0]!.toFixed(2)} at end, ${m.machine.cores} cores): other work shared the cores, so these figures understate the relay and its peers unevenly.`
    : '';
  const targetTable: Table = { title: 'Targets (issue 16, each measured in this run)', headers: ['target', 'measured', 'met'], rows: targets.map((t) => [t.target, t.measured, met(t.met)]) };
  const errors = Object.entries(r.errors).map(([k, v]) => `scenario ${k} failed: ${v.split('\n')[0]}`);
  if (busyNote) head.push(busyNote);
  const text = [...head, '', ...tables.map(textTable).flatMap((t) => [t, '']), textTable(targetTable), ...errors].join('\n');
  const markdown = [
    `**Date:** ${m.date}  `,
    `**Command:** \`${m.command}\` (${m.durationSec} s)  `,
    `**Machine:** ${m.machine.cpu}, ${m.machine.cores} cores, ${m.machine.memGiB} GiB, Linux ${m.machine.kernel}, Node ${m.machine.node}; load average ${m.loadavgStart.map((v) => v.toFixed(2)).join(' ')} at start, ${m.loadavgEnd.map((v) => v.toFixed(2)).join(' ')} at end  `,
    `**Peers:** ${
      Object.entries(m.peers)
        .map(([k, v]) => `${k} ${v}`)
        .join('; ') || 'none'
    }`,
    ...(busyNote ? ['', `**${busyNote}**`] : []),
    '',
    mdTable(targetTable),
    '',
    ...tables.map(mdTable).flatMap((t) => [t, '']),
    ...errors.map((e) => `- ${e}`),
  ].join('\n');
  return { text, markdown, ratios, targets };
}

const met = (t: Target['met']) => (t === null ? 'n/a' : t ? 'MET' : 'MISSED');
const n = (v: number | null) => (v === null ? '-' : fmtNum(v));

/** The issue's speed targets, each a ratio of figures taken in this run. */
function issueTargets(r: BenchResults, vsPrevious: ReturnType<typeof againstPrevious>): Target[] {
  const targets: Target[] = [];
  const d = r.durable;
  const full = d?.runs.find((x) => x.system === 'relay' && x.durability.includes('FULL'))?.ackedPerSec ?? null;
  const redisAlways = d?.runs.find((x) => x.durability.includes('always'))?.ackedPerSec ?? null;
  const sqB = d?.sqlite.find((c) => c.sync === 'FULL' && c.msgsPerCommit > 1)?.msgsPerSec ?? null;
  const rRedis = ratio(full, redisAlways);
  const rSqlite = ratio(full, sqB);
  targets.push({
    target: 'acknowledged durable publishes/s, FULL ≥ 1.0× Redis XADD appendfsync always',
    measured: `${n(full)} vs ${n(redisAlways)} /s = ${x(rRedis)}`,
    met: rRedis === null ? null : rRedis >= 1,
  });
  targets.push({
    target: 'acknowledged durable publishes/s, FULL ≥ 50% of raw better-sqlite3 FULL batched',
    measured: `${n(full)} vs ${n(sqB)} /s = ${pct(rSqlite)}`,
    met: rSqlite === null ? null : rSqlite >= 0.5,
  });

  const f = r.fanout;
  for (const n of [1, 100]) {
    const relay = f?.maxHeld.find((m) => m.system === 'relay' && m.n === n);
    const uws = f?.maxHeld.find((m) => m.system === 'uws' && m.n === n);
    const t = ratio(relay?.rate, uws?.rate);
    const best = f ? ratio(bestDelivered(f.steps, 'relay', n), bestDelivered(f.steps, 'uws', n)) : null;
    targets.push({
      target: `fan-out N=${n}: highest rate held (all arrived, p99 < 50 ms) ≥ 0.8× bare uWS`,
      measured:
        relay && uws
          ? `${relay.rate === null ? 'none' : fmtNum(relay.rate)} vs ${uws.rate === null ? 'none' : fmtNum(uws.rate)} msgs/s = ${x(t)} (best delivered/s ${x(best)})`
          : f
            ? 'not searched in this run'
            : 'not measured in this run',
      met: t !== null ? t >= 0.8 : relay && uws && relay.rate === null && uws.rate !== null ? false : null,
    });
  }

  const s5 = f && at(f.steps, 'relay', 1, 5000);
  const u5 = f && at(f.steps, 'uws', 1, 5000);
  const fs = d?.fsync?.latency.p99;
  if (s5 && u5 && !u5.skipped && fs !== undefined) {
    const limit = 1.5 * (u5.latency.p99 + fs);
    const p99 = s5.skipped ? null : s5.latency.p99;
    targets.push({
      target: 'p99 publish-to-delivery at 5,000 msgs/s, N=1 ≤ 1.5 × (bare uWS p99 + raw fsync p99)',
      measured: `${p99 === null ? 'saturated' : `${fmtNum(p99)} ms`} vs 1.5 × (${fmtNum(u5.latency.p99)} + ${fmtNum(fs)}) = ${fmtNum(limit)} ms${p99 === null ? '' : ` (${x(ratio(p99, limit))} of the limit)`}`,
      met: p99 !== null && p99 <= limit && s5.held,
    });
  } else {
    targets.push({
      target: 'p99 publish-to-delivery at 5,000 msgs/s, N=1 ≤ 1.5 × (bare uWS p99 + raw fsync p99)',
      measured: `not measured in this run (needs relay and bare uWS at N=1, 5,000/s${fs === undefined ? ', and the raw fsync of the durable scenario' : ''})`,
      met: null,
    });
  }

  const c = r.claims;
  targets.push(
    c
      ? {
          target: 'claims ≥ 10,000/s with zero double claims',
          measured: `${fmtNum(c.claimsPerSec)}/s, ${c.doubleClaims + c.doubleClaimsInDb} double`,
          met: c.claimsPerSec >= 10_000 && c.doubleClaims === 0 && c.doubleClaimsInDb === 0,
        }
      : { target: 'claims ≥ 10,000/s with zero double claims', measured: 'not run', met: null },
  );

  const regressed = vsPrevious?.table ? vsPrevious.regressed : null;
  targets.push({
    target: 'nothing else regresses by more than 10% (memory per connection, recovery, HTTP) against the previous run',
    measured: !vsPrevious
      ? 'no previous run of this profile to compare with'
      : regressed === null
        ? 'none of these figures measured in this run'
        : regressed.length
          ? `regressed: ${regressed.join('; ')} (see "Against the previous run")`
          : 'none regressed by > 10% (see "Against the previous run")',
    met: regressed === null ? null : regressed.length === 0,
  });
  return targets;
}

/** Figures that must not regress, with which way is better. */
const WATCHED: Array<{ name: string; lowerIsBetter: boolean; get: (r: BenchResults) => number | undefined }> = [
  { name: 'memory per idle connection, KiB', lowerIsBetter: true, get: (r) => (r.connections ? Math.round(r.connections.bytesPerConnection / 102.4) / 10 : undefined) },
  { name: 'recovery: restart to healthy, ms', lowerIsBetter: true, get: (r) => r.recovery?.restartMs },
  { name: 'recovery: all agents caught up, ms', lowerIsBetter: true, get: (r) => r.recovery?.catchUpMs },
  { name: 'HTTP webhook ingress, events/s', lowerIsBetter: false, get: (r) => r.http?.ingress.eventsPerSec },
  { name: 'HTTP webhook ingress p99, ms', lowerIsBetter: true, get: (r) => r.http?.ingress.latency.p99 },
  { name: 'HTTP long-poll wake p99, ms', lowerIsBetter: true, get: (r) => r.http?.longPoll.latency.p99 },
  { name: 'HTTP SSE fan-out p99, ms', lowerIsBetter: true, get: (r) => r.http?.sse.latency.p99 },
];

/** This run's watched figures against the previous run's: the ratio of each, and which got worse by > 10%. */
function againstPrevious(r: BenchResults, prev?: BenchResults | null): { table: Table | null; regressed: string[] } | null {
  if (!prev) return null;
  const rows: Table['rows'] = [];
  const regressed: string[] = [];
  for (const w of WATCHED) {
    const now = w.get(r);
    const before = w.get(prev);
    if (now === undefined || before === undefined || !Number.isFinite(now) || !Number.isFinite(before)) continue;
    const q = ratio(now, before);
    const worse = q !== null && (w.lowerIsBetter ? q > 1.1 : q < 1 / 1.1);
    if (worse) regressed.push(`${w.name} ${x(q)}`);
    rows.push([w.name, fmtNum(before), fmtNum(now), x(q), w.lowerIsBetter ? 'lower' : 'higher', worse ? 'REGRESSED' : 'ok']);
  }
  if (!rows.length) return { table: null, regressed };
  rows.push(['nothing regressed by > 10%', '', '', '', '', met(regressed.length === 0)]);
  return {
    table: {
      title: `Against the previous run (${prev.meta.profile} profile, ${prev.meta.date})`,
      headers: ['figure', 'previous', 'this run', 'this ÷ previous', 'better', 'verdict'],
      rows,
      note: 'REGRESSED = more than 10% worse than the previous recorded run of this profile. Runs on this machine vary by ±30% and more (RESULTS.md), so a REGRESSED row is a flag to look (re-run, A/B), not a verdict.',
    },
    regressed,
  };
}
