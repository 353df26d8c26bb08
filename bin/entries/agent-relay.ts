// The agent-relay command: the CLI with the Claude Code and Codex command groups. Built into
// dist/bin/agent-relay.js (scripts/build.mjs); bin/agent-relay.js runs that.
import { processIo, runCli } from '../../clients/cli/main.js';
import { claudeCommands } from '../../adapters/claude/commands.js';
import { codexCommands } from '../../adapters/codex/commands.js';

const argv = process.argv.slice(2);
const code = await runCli(argv, processIo, [claudeCommands, codexCommands]);
// serve keeps running; every other command is done: exit now rather than wait for idle HTTP keep-alive sockets.
if (argv[0] !== 'serve' || code !== 0) process.exit(code);
