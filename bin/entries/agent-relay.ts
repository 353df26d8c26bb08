// The agent-relay command: the CLI with the Claude Code, Codex and MCP command groups and `serve` (the
// relay): this entry composes them, as broker/main.ts composes the relay. Built into
// dist/bin/agent-relay.js (scripts/build.mjs); bin/agent-relay.js runs that.
import { type MigrateCommand, processIo, runCli, type ServeCommand } from '../../clients/cli/main.js';
import { claudeCommands } from '../../adapters/claude/commands.js';
import { codexCommands } from '../../adapters/codex/commands.js';
import { mcpCommands } from '../../adapters/mcp/commands.js';

const argv = process.argv.slice(2);
// `serve` is the relay itself (broker/main.ts, as npm start): imported only when run, so the other
// commands never load uWebSockets.js or SQLite (esbuild keeps it a chunk of its own).
const serve: ServeCommand = async (args, err) => (await import('../../broker/main.js')).serve(args, err);
// `migrate` (SQLite to PostgreSQL) is the broker's code too, loaded the same way.
const migrate: MigrateCommand = async (args, out, err) => (await import('../../broker/main.js')).migrate(args, out, err);
const code = await runCli(argv, processIo, [claudeCommands, codexCommands, mcpCommands], { serve, migrate });
// serve keeps running; every other command is done: exit now rather than wait for idle HTTP keep-alive sockets.
if (argv[0] !== 'serve' || code !== 0) process.exit(code);
