import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { childEnv, ROOT, spawnChild, type TsChild } from '../helpers/child.js';
import { startRelay } from '../helpers/relay.js';
import { waitFor } from '../helpers/wait.js';
import { WsRpc } from '../helpers/ws-client.js';
import { testedBlock as readmeBlock } from '../helpers/readme.js';

/**
 * The README's walk-throughs run as written, each against a real relay on a fresh database, so
 * the text and the relay cannot drift apart. A tested block is the fenced block right after a
 * `<!-- tested: NAME ... -->` line in README.md:
 *
 * - wscat: every `>` line is sent as one text frame on one WebSocket; every `<` line is the
 *   answer shown. A `<` line with an `id` is compared with the response carrying that id, one
 *   without (a notification) with the next notification of its method received after the `>`
 *   before it; notifications not shown are ignored, but every request's response must be shown.
 * - curl: the block runs in real bash with real curl, `R=` pointed at the test relay; every curl
 *   call must answer 2xx, and the stream (`curl -N`) is cut by a timeout instead of being skipped.
 *   The ingress block does the same against a relay loaded with the README's integrations file.
 * - cli: every `agent-relay` command (lines split at `;`) runs as a child process of the CLI
 *   (runCliLine) and must exit 0; a `# → TEXT` comment means its output contains TEXT.
 *   `serve` is the relay the other commands talk to; `serve` and `tail` run until stopped.
 *
 * Matching rule for shown JSON (`matchShown`): a field shown must be present with an equal value;
 * an object without `...` has exactly the fields shown, `...` among its fields allows more; the
 * string value `"..."` matches any value (tokens, times). Arrays match element by element.
 */

/** Generous bound for one step (a child's start-up included): a safety net, not a timing assertion. */
const STEP_MS = 30_000;

const MORE = '...';

/** Parse shown JSON: a bare `...` (outside strings) becomes the field `"...": true`. */
function parseShown(text: string): unknown {
  let out = '';
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i] ?? '';
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
      out += c;
    } else if (text.startsWith(MORE, i)) {
      out += `"${MORE}":true`;
      i += MORE.length - 1;
    } else out += c;
  }
  return JSON.parse(out);
}

/** Where `actual` differs from what the README shows (empty: it matches). */
function matchShown(actual: unknown, shown: unknown, path = '$'): string[] {
  if (shown === MORE) return [];
  if (Array.isArray(shown)) {
    if (!Array.isArray(actual) || actual.length !== shown.length) return [`${path}: ${JSON.stringify(actual)} is not an array of ${shown.length}`];
    return shown.flatMap((s, i) => matchShown(actual[i], s, `${path}[${i}]`));
  }
  if (shown !== null && typeof shown === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return [`${path}: ${JSON.stringify(actual)} is not an object`];
    const a = actual as Record<string, unknown>;
    const s = shown as Record<string, unknown>;
    const problems = Object.keys(s)
      .filter((k) => k !== MORE)
      .flatMap((k) => (k in a ? matchShown(a[k], s[k], `${path}.${k}`) : [`${path}.${k}: missing`]));
    if (!(MORE in s)) for (const k of Object.keys(a)) if (!(k in s)) problems.push(`${path}.${k}: not shown (add it or "...")`);
    return problems;
  }
  return Object.is(actual, shown) ? [] : [`${path}: ${JSON.stringify(actual)}, shown ${JSON.stringify(shown)}`];
}

t.test('the matching rule can fail', async (t) => {
  const shown = parseShown('{"a":1,"b":{"c":"...",...},"d":[1,2]}');
  t.same(matchShown({ a: 1, b: { c: 'x', e: 3 }, d: [1, 2] }, shown), [], 'omitted fields and wildcards');
  t.not(matchShown({ a: 2, b: { c: 'x' }, d: [1, 2] }, shown).length, 0, 'a different value');
  t.not(matchShown({ a: 1, b: {}, d: [1, 2] }, shown).length, 0, 'a missing field');
  t.not(matchShown({ a: 1, b: { c: 1 }, d: [1, 2], z: 0 }, shown).length, 0, 'an extra field where none is omitted');
  t.not(matchShown({ a: 1, b: { c: 1 }, d: [1] }, shown).length, 0, 'a shorter array');
  t.same(parseShown('{"s":"a...b"}'), { s: 'a...b' }, '... inside a string is text');
});

t.test('the wscat session answers as shown', async (t) => {
  const relay = await startRelay(t);
  const rpc = await WsRpc.connect(t, relay.wsUrl);
  const lines = readmeBlock('wscat').split('\n');
  t.ok(lines.length >= 10, `${lines.length} lines`);
  const requested: unknown[] = [];
  const shownIds: unknown[] = [];
  let since = 0; // index in rpc.raw of the first frame after the last `>`
  const used = new Set<unknown>();
  for (const line of lines) {
    if (line.startsWith('> ')) {
      const id = (JSON.parse(line.slice(2)) as { id?: unknown }).id;
      if (id !== undefined) requested.push(id);
      since = rpc.raw.length;
      rpc.ws.send(line.slice(2));
    } else if (line.startsWith('< ')) {
      const shown = parseShown(line.slice(2)) as { id?: unknown; method?: string };
      const pick = (): unknown =>
        shown.id !== undefined ? rpc.raw.find((m: any) => m.id === shown.id) : rpc.raw.slice(since).find((m: any) => m.method === shown.method && m.id === undefined && !used.has(m));
      await rpc.until(() => pick() !== undefined, STEP_MS, `the answer shown as ${line.slice(0, 80)}`);
      const actual = pick();
      used.add(actual);
      if (shown.id !== undefined) shownIds.push(shown.id);
      t.same(matchShown(actual, shown), [], `${line.slice(2, 90)}...`);
    } else t.equal(line, '', 'only > and < lines');
  }
  t.same(shownIds, requested, 'every request has its response shown, in order');
});

/** Wait for a child to exit; kill it and fail if it outlives `ms`. */
async function finished(child: TsChild, ms = STEP_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  const r = await Promise.race([child.exited, bound]);
  clearTimeout(timer);
  if (r !== 'timeout') return r;
  child.kill('SIGKILL');
  throw new Error(`still running after ${ms} ms\nstdout: ${child.stdout()}\nstderr: ${child.stderr()}`);
}

// Every curl call reports `HTTP CODE exit=RC` on stderr; a stream (-N) is cut after 2 s (exit 28).
const CURL_PRELUDE = `curl() {
  local limit=20
  case " $* " in *" -sN "*|*" -N "*) limit=2 ;; esac
  command curl --max-time "$limit" -w '%{stderr}HTTP %{http_code} ' "$@"
  local rc=$?
  printf 'exit=%s\\n' "$rc" >&2
  return "$rc"
}
`;

/**
 * Run a tested curl block in bash against `url` (its `R=` line pointed there, `vars` exported):
 * every call must answer 2xx, a stream (-N) must be cut by the timeout while answering 200.
 */
async function runCurlBlock(t: Test, name: string, url: string, vars: Record<string, string> = {}): Promise<void> {
  // R= in the block is pointed at the test relay; a block without one gets R from the environment.
  const script = readmeBlock(name).replace(/^R=.*$/m, `R=${url}`);
  // The calls in order: each `curl` at a line's start or after `;`, `(` or `|`, comments aside.
  const calls = script
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .flatMap((l) => [...l.matchAll(/(?:^|[;(|]\s*)(curl\s[^;]*)/g)].map((m) => m[1]!.trim()));
  t.ok(calls.length > 0, `${calls.length} curl calls`);
  const bash = spawnChild(t, 'bash', ['-c', CURL_PRELUDE + script], { env: childEnv({ R: url, ...vars }) });
  const exit = await finished(bash, 60_000);
  const results = [...bash.stderr().matchAll(/^HTTP (\d{3}) exit=(\d+)$/gm)].map((m) => ({ status: Number(m[1]), rc: Number(m[2]) }));
  t.equal(results.length, calls.length, `every call ran\nstderr: ${bash.stderr()}`);
  calls.forEach((call, i) => {
    const stream = /\s-s?N\s/.test(call);
    const want = stream ? { status: 200, rc: 28 } : { rc: 0 };
    t.match(results[i], want, `${call.slice(0, 100)} → ${JSON.stringify(results[i])}`);
    if (!stream) t.ok(results[i] && results[i].status >= 200 && results[i].status < 300, `2xx: ${call.slice(0, 60)}`);
  });
  t.equal(exit.code, 0, 'the script ends well');
}

/** The README's example integrations file, and its pagerduty secret. */
function readmeIntegrations(): { text: string; secret: string } {
  const text = readmeBlock('integrations');
  const secret = (JSON.parse(text) as { integrations: Array<{ name: string; secret: string }> }).integrations.find((i) => i.name === 'pagerduty')!.secret;
  return { text, secret };
}

t.test('the curl block runs as written', async (t) => {
  const relay = await startRelay(t);
  t.match(readmeBlock('curl'), /^R=http:\/\/127\.0\.0\.1:4850$/m, 'the block sets R to the default address');
  await runCurlBlock(t, 'curl', relay.url);
});

t.test('the webhook ingress block runs as written against the example integrations file', async (t) => {
  const { text, secret } = readmeIntegrations();
  const dir = t.testdir();
  const file = join(dir, 'integrations.json');
  writeFileSync(file, text);
  const relay = await startRelay(t, { integrationsPath: file }, { dir });
  await runCurlBlock(t, 'ingress', relay.url, { SECRET: secret });
  // trigger opened the task, resolve closed it as done.
  const tasks = (await (await fetch(`${relay.url}/api/tasks`)).json()) as { tasks: Array<{ source: string; dedupeKey: string; status: string }> };
  t.match(tasks.tasks, [{ source: 'pagerduty', dedupeKey: 'db-1-disk', status: 'done' }], 'one pagerduty task, resolved');
});

/** A command line of the walk-through, as a shell would split it: words, quotes, $VARS. */
function shellWords(text: string, vars: Record<string, string>): string[] {
  const words: string[] = [];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '$' && quote === '"') {
        const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1))![0];
        if (!(name in vars)) throw new Error(`$${name} is not set for the walk-through`);
        word += vars[name]!;
        i += name.length;
      } else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= '';
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === '$') throw new Error(`unquoted $ in ${text}`);
    else word = (word ?? '') + c;
  }
  if (quote) throw new Error(`unclosed ${quote} in ${text}`);
  if (word !== null) words.push(word);
  return words;
}

/** A line split into commands at `;` and its comment, both outside quotes. */
function splitLine(line: string): { commands: string[]; comment: string } {
  const commands: string[] = [];
  let quote: string | null = null;
  let start = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === ';') {
      commands.push(line.slice(start, i));
      start = i + 1;
    } else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) {
      commands.push(line.slice(start, i));
      return { commands: commands.map((s) => s.trim()).filter(Boolean), comment: line.slice(i + 1).trim() };
    }
  }
  commands.push(line.slice(start));
  return { commands: commands.map((s) => s.trim()).filter(Boolean), comment: '' };
}

/**
 * THE way this test runs the CLI: `agent-relay ARGS` as a child process. Switch it here when the
 * bin changes (e.g. to compiled JavaScript).
 */
function runCliLine(t: Test, args: string[], env: NodeJS.ProcessEnv): TsChild {
  return spawnChild(t, process.execPath, [join(ROOT, 'bin', 'agent-relay.js'), ...args], { env });
}

t.test('the CLI walk-through runs as written', async (t) => {
  const dir = t.testdir();
  // The relay's integrations are the README's example file, so the `event` line has its pagerduty.
  const { text, secret } = readmeIntegrations();
  writeFileSync(join(dir, 'integrations.json'), text);
  const lines = readmeBlock('cli').split('\n');
  const home = join(dir, 'home');
  let url: string | null = null;
  const cliEnv = () => childEnv({ AGENT_RELAY_HOME: home, ...(url ? { AGENT_RELAY_URL: url } : {}) }, (k) => k.startsWith('AGENT_RELAY_') || k === 'NO_COLOR');
  let ran = 0;
  for (const line of lines) {
    const { commands, comment } = splitLine(line);
    const expected = comment.startsWith('→') ? comment.slice(1).trim() : null;
    for (const command of commands) {
      const [bin, ...args] = shellWords(command, { SECRET: secret });
      t.equal(bin, 'agent-relay', `${command}: an agent-relay command`);
      ran++;
      if (args[0] === 'serve') {
        // Fresh database in the test's directory and a free port; the rest of the line as written.
        const relay = runCliLine(t, [...args, '--port', '0', '--db', join(dir, 'relay.db')], { ...cliEnv(), AGENT_RELAY_INTEGRATIONS: join(dir, 'integrations.json') });
        let gone = false;
        void relay.exited.then(() => (gone = true));
        const listening = () => /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(relay.stdout())?.[1];
        await waitFor(() => gone || listening() !== undefined, `${command} to listen`, STEP_MS);
        t.notOk(gone, `${command} keeps running${gone ? `\nstderr: ${relay.stderr()}` : ''}`);
        url = listening()!;
        t.pass(`${command}: listening on ${url}`);
        continue;
      }
      t.ok(url, `${command}: the walk-through started its relay first`);
      const child = runCliLine(t, args, cliEnv());
      if (args[0] === 'tail') {
        // Runs until stopped: it must hold a connection to the relay, then stop cleanly.
        await waitFor(async () => ((await (await fetch(`${url}/healthz`)).json()) as { connections: number }).connections > 0, `${command} to connect`, STEP_MS);
        child.kill('SIGTERM');
        t.same(await finished(child), { code: 0, signal: null }, `${command}: connected, and stops cleanly on SIGTERM`);
        continue;
      }
      const exit = await finished(child);
      t.same(exit, { code: 0, signal: null }, `${command}: exit 0${exit.code ? `\nstderr: ${child.stderr()}` : ''}`);
      if (expected !== null && commands.length === 1) t.match(child.stdout(), expected, `${command}: prints ${expected}`);
    }
  }
  t.ok(ran >= 15, `${ran} commands ran`);
});
