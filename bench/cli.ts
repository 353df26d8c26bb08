// `npm run bench:cli`: how long the agent-relay command takes, as a user and Claude Code run it.
// Each command is the built bin (`node bin/agent-relay.js`, what `npm install -g` links) started
// afresh, RUNS times, interleaved with `node -e 0` so both see the same machine; the figure is the
// median wall time from spawn to exit, and the ratio is to `node -e 0`'s median in the same run.
// The relay runs as its own process (dist/broker/main.js) on a fresh database in a temp folder.
// `--node PATH` times the CLI and `node -e 0` with another Node binary (the relay keeps this one),
// e.g. the Node 24 that scripts/test-node24.sh installs.
// Targets (issue 13): --help ≤ 2× `node -e 0`; the UserPromptSubmit hook with the relay up ≤ 300 ms.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startRelay } from './lib/relay-proc.js';
import { runMain, ROOT } from './lib/proc.js';
import { mdTable, textTable, type Table } from './lib/table.js';
import { updateSection } from './lib/results-md.js';

const BIN = join(ROOT, 'bin', 'agent-relay.js');

interface Case {
  name: string;
  args: string[];
  stdin?: string;
  target?: { ratio?: number; ms?: number };
}

/** Spawn → exit in ms; fails loudly on a non-zero exit so a broken command is not timed as fast. */
function timeRun(cmd: string, args: string[], env: NodeJS.ProcessEnv, stdin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdin.end(stdin ?? '');
    child.once('error', reject);
    child.once('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`${args.join(' ')} exited ${code}: ${err.trim()}`));
      else resolve(ms);
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string' }, node: { type: 'string' }, 'no-results-md': { type: 'boolean' } }, strict: true });
  const runs = Number(values.runs ?? 21);
  const node = values.node ?? process.execPath;
  const nodeVersion = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
  const command = `npm run bench:cli${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const log = (line: string) => process.stdout.write(`${line}\n`);
  log(
    `agent-relay CLI bench: ${runs} runs of each command, node ${nodeVersion}; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );

  const home = mkdtempSync(join(tmpdir(), 'agent-relay-cli-bench-'));
  const relay = await startRelay({ name: 'cli-bench' });
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, AGENT_RELAY_HOME: home, AGENT_RELAY_URL: relay.url, NO_COLOR: '1' };
    delete env.NODE_OPTIONS;
    // A session as Claude Code gives it: SessionStart registers its agent, later hooks find it.
    const hookInput = (event: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ session_id: 'bench-session', cwd: home, hook_event_name: event, transcript_path: join(home, 't.jsonl'), ...extra });
    await timeRun(node, [BIN, 'hook', 'session-start'], env, hookInput('SessionStart', { source: 'startup' }));
    await timeRun(node, [BIN, 'register', '--id', 'bench-peer'], env);

    const cases: Case[] = [
      { name: 'agent-relay --help', args: ['--help'], target: { ratio: 2 } },
      { name: 'agent-relay agents --json (relay up)', args: ['agents', '--json'] },
      { name: 'hook session-start (relay up)', args: ['hook', 'session-start'], stdin: hookInput('SessionStart', { source: 'resume' }) },
      { name: 'hook user-prompt-submit (relay up)', args: ['hook', 'user-prompt-submit'], stdin: hookInput('UserPromptSubmit', { prompt: 'hi' }), target: { ms: 300 } },
      { name: 'hook stop (relay up)', args: ['hook', 'stop'], stdin: hookInput('Stop', { stop_hook_active: false }) },
      { name: 'hook session-end (relay up)', args: ['hook', 'session-end'], stdin: hookInput('SessionEnd', { reason: 'other' }) },
    ];
    const baseline: number[] = [];
    const times = new Map<string, number[]>(cases.map((c) => [c.name, []]));
    // Warm the file cache (and Node's compile cache, where it has one) once, untimed.
    await timeRun(node, ['-e', '0'], env);
    for (const c of cases) await timeRun(node, [BIN, ...c.args], env, c.stdin);
    for (let i = 0; i < runs; i++) {
      baseline.push(await timeRun(node, ['-e', '0'], env));
      for (const c of cases) times.get(c.name)!.push(await timeRun(node, [BIN, ...c.args], env, c.stdin));
    }
    const base = median(baseline);
    const rows: Table['rows'] = [['node -e 0', Math.round(base), '1.00', '', '']];
    for (const c of cases) {
      const m = median(times.get(c.name)!);
      const ratio = m / base;
      const target = c.target?.ratio !== undefined ? `≤ ${c.target.ratio}× node -e 0` : c.target?.ms !== undefined ? `≤ ${c.target.ms} ms` : '';
      const met = c.target?.ratio !== undefined ? ratio <= c.target.ratio : c.target?.ms !== undefined ? m <= c.target.ms : null;
      rows.push([c.name, Math.round(m), ratio.toFixed(2), target, met === null ? '' : met ? 'met' : 'missed']);
    }
    const table: Table = { title: 'CLI start-up: median wall time, spawn to exit', headers: ['command', 'median ms', '× node -e 0', 'target', ''], rows };
    log(`\n${textTable(table)}`);
    if (!values['no-results-md']) {
      const md = `Command: \`${command}\` (${new Date().toISOString().slice(0, 16)}Z, node ${nodeVersion}, ${runs} runs each, load average at end ${loadavg()[0]!.toFixed(2)}).\n\n${mdTable(table)}\n`;
      updateSection(join(ROOT, 'bench', 'RESULTS.md'), `cli-node${nodeVersion.split('.')[0]!.slice(1)}`, `## CLI start-up on Node ${nodeVersion.split('.')[0]!.slice(1)} (latest run)`, md);
      log('\nwrote the CLI section of bench/RESULTS.md');
    }
  } finally {
    await relay.stop();
    rmSync(home, { recursive: true, force: true });
  }
}

runMain(main);
