// Loads the package's built CLI for scripts/relay and runs it with the remaining arguments. When it
// cannot load (no node_modules, no dist/: a checkout without `npm ci`) this exits 0 with one line on
// stderr and one in the hook log, so no hook fails and nothing is shown as a hook error.
// Usage: node run-cli.mjs PACKAGE_ROOT ARGS...
import { appendFileSync, mkdirSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [root, ...args] = process.argv.slice(2);
// The CLI parses process.argv: leave it as if it had been started directly.
process.argv.splice(2, 1);
module.enableCompileCache?.();
try {
  await import(pathToFileURL(join(root, 'dist', 'bin', 'agent-relay.js')).href);
} catch (err) {
  const code = err?.code ?? err?.name ?? 'Error';
  const first = String(err?.message ?? err).split('\n')[0].slice(0, 300);
  const what = code === 'ERR_MODULE_NOT_FOUND' ? 'cannot load' : 'failed';
  const why = `agent-relay CLI ${what} (${code}: ${first}); run \`npm ci\` in ${root}`;
  try {
    const log = join(process.env.AGENT_RELAY_HOME || join(process.env.HOME || homedir(), '.agent-relay'), 'claude', 'hooks.log');
    mkdirSync(dirname(log), { recursive: true, mode: 0o700 });
    appendFileSync(log, `${new Date().toISOString()} ${args.join(' ')}: ${why}\n`);
  } catch {
    // Nowhere to log: the line on stderr is all there is.
  }
  process.stderr.write(`agent-relay: ${why}\n`);
  process.exit(0);
}
