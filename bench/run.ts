import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startPostgresPeer } from './peers/postgres.js';
import { ensureInstalled, startNats, startRedis } from './peers/setup.js';
import { nowMs } from './lib/clock.js';
import { PROFILES, type BenchContext, type Peers, type Profile } from './lib/context.js';
import { SYSTEMS, type SystemName } from './lib/drivers.js';
import { BENCH, runMain, settleMachine } from './lib/proc.js';
import { buildReport, type BenchResults } from './lib/report.js';
import { renderFanoutSvg } from './lib/svg.js';
import { updateResultsMd } from './lib/results-md.js';
import { benchTmp } from './lib/relay-proc.js';

const SCENARIOS = ['fanout', 'durable', 'claims', 'http', 'connections', 'recovery'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const USAGE = `npm run bench [-- options]

  --full               the long profile (issue sizes); default: the quick profile
  --only a,b           scenarios to run: ${SCENARIOS.join(', ')}
  --systems a,b        fan-out systems: ${SYSTEMS.join(', ')}
  --subscribers a,b    fan-out subscriber counts (overrides the profile's)
  --rates a,b          fan-out offered rates, msgs/s (overrides the profile's)
  --cpu-prof           run the relay with --cpu-prof (profiles in bench/results/prof/)
  --no-results-md      do not rewrite bench/RESULTS.md
  --help`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      full: { type: 'boolean' },
      only: { type: 'string' },
      systems: { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      subscribers: { type: 'string' },
      rates: { type: 'string' },
      'no-results-md': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return void console.log(USAGE);
  const profile: Profile = values.full ? 'full' : 'quick';
  const only = (values.only?.split(',').map((s) => s.trim()) ?? [...SCENARIOS]) as ScenarioName[];
  for (const s of only) if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}`);
  let systems = (values.systems?.split(',').map((s) => s.trim()) ?? [...SYSTEMS]) as SystemName[];
  for (const s of systems) if (!SYSTEMS.includes(s)) throw new Error(`unknown system ${s}`);

  benchTmp(); // fixes BENCH_TMP before any worker is forked, so they all write under it
  const started = nowMs();
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  log(`agent-relay bench: ${profile} profile, scenarios ${only.join(', ')}`);
  log(
    `load average at start: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  if (loadavg()[0]! >= 1.5) log('warning: the machine is busy (load average ≥ 1.5); figures taken now understate every system, unevenly');

  const peers: Peers = {};
  const needPeers = only.includes('fanout') || only.includes('durable');
  const wantsPeer = (s: SystemName) => systems.includes(s);
  if (needPeers && (wantsPeer('nats') || wantsPeer('jetstream') || wantsPeer('redis-pubsub') || wantsPeer('redis-streams'))) {
    const missing = ensureInstalled(log);
    if (!missing.includes('nats-server')) peers.nats = await startNats();
    if (!missing.includes('redis-server')) peers.redis = await startRedis();
    for (const p of Object.values(peers)) log(`  ${p.name} ${p.version}: pid ${p.pid}, 127.0.0.1:${p.port}`);
  }
  if (only.includes('durable')) {
    const postgres = await startPostgresPeer();
    if (postgres) {
      peers.postgres = postgres;
      log(`  postgresql ${postgres.version}: pid ${postgres.pid}, 127.0.0.1:${postgres.port}`);
    } else log('  postgresql is not installed (apt-get install postgresql): the relay on PostgreSQL is left out');
  }
  if (!peers.nats) systems = systems.filter((s) => s !== 'nats' && s !== 'jetstream');
  if (!peers.redis) systems = systems.filter((s) => s !== 'redis-pubsub' && s !== 'redis-streams');

  const cfg = structuredClone(PROFILES[profile]);
  const nums = (v: string) =>
    v
      .split(',')
      .map((x) => Number(x.trim()))
      .filter((x) => x > 0);
  if (values.subscribers) cfg.fanout.subscriberCounts = cfg.fanout.peerSubscriberCounts = cfg.fanout.searchAt = cfg.fanout.peerSearchAt = nums(values.subscribers);
  if (values.rates) cfg.fanout.rates = nums(values.rates);
  const ctx: BenchContext = { profile, cfg, peers, cpuProf: Boolean(values['cpu-prof']), log, systems };
  const results: BenchResults = {
    meta: {
      profile,
      command,
      date: new Date().toISOString(),
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version },
      loadavgStart: loadavg(),
      loadavgEnd: [],
      peers: Object.fromEntries(Object.values(peers).map((p) => [p.name, p.version])),
      sizes: ctx.cfg,
      durationSec: 0,
    },
    errors: {},
  };

  try {
    for (const name of only) {
      log(`\n== ${name}`);
      const quiet = await settleMachine();
      if (quiet) log(`  machine quiet after ${quiet.waitedMs} ms (${quiet.busyCores} cores busy)`);
      const t0 = nowMs();
      try {
        const mod = await import(`./scenarios/${name}.js`);
        const fn = mod[`run${name[0]!.toUpperCase()}${name.slice(1)}`] as (c: BenchContext) => Promise<unknown>;
        (results as unknown as Record<string, unknown>)[name] = await fn(ctx);
      } catch (err) {
        results.errors[name] = String((err as Error)?.stack ?? err);
        log(`  ${name} failed: ${(err as Error)?.message ?? err}`);
      }
      log(`  (${((nowMs() - t0) / 1000).toFixed(0)} s)`);
    }
  } finally {
    for (const p of Object.values(peers)) await p.stop();
    rmSync(benchTmp(), { recursive: true, force: true });
  }

  results.meta.loadavgEnd = loadavg();
  results.meta.durationSec = Math.round((nowMs() - started) / 1000);
  const dir = join(BENCH, 'results');
  // The previous whole run of this profile, read before this run may overwrite it: the baseline of "nothing regresses".
  const prevPath = join(dir, `latest-${profile}.json`);
  const previous = existsSync(prevPath) ? (JSON.parse(readFileSync(prevPath, 'utf8')) as BenchResults) : null;
  const report = buildReport(results, previous);
  log(`\n${report.text}`);

  mkdirSync(dir, { recursive: true });
  const stamp = results.meta.date.replace(/[:.]/g, '-');
  const partial = values.only !== undefined || values.systems !== undefined || values.subscribers !== undefined || values.rates !== undefined;
  const base = `${profile}${partial ? '-partial' : ''}`;
  const json = JSON.stringify({ ...results, ratios: report.ratios, targets: report.targets }, null, 2);
  writeFileSync(join(dir, `${base}-${stamp}.json`), json);
  writeFileSync(join(dir, `latest-${base}.json`), json);
  if (results.fanout) {
    writeFileSync(join(dir, `fanout-latency-${base}.svg`), renderFanoutSvg(results.fanout, results.meta));
  }
  if (!partial && !values['no-results-md']) updateResultsMd(join(BENCH, 'RESULTS.md'), profile, report.markdown, `results/fanout-latency-${base}.svg`);
  log(`\nwrote bench/results/latest-${base}.json${results.fanout ? `, bench/results/fanout-latency-${base}.svg` : ''}${!partial && !values['no-results-md'] ? ', bench/RESULTS.md' : ''}`);
  log(
    `total ${results.meta.durationSec} s; load average at end: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
}

runMain(main);
