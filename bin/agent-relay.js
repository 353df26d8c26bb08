#!/usr/bin/env node
// The agent-relay command. TypeScript sources run through tsx's loader; no build step.
import { register } from 'tsx/esm/api';

register();
const { runCli, processIo } = await import('../clients/cli/main.ts');
const { claudeCommands } = await import('../adapters/claude/commands.ts');
const { codexCommands } = await import('../adapters/codex/commands.ts');
const argv = process.argv.slice(2);
const code = await runCli(argv, processIo, [claudeCommands, codexCommands]);
// serve keeps running; every other command is done: exit now rather than wait for idle HTTP keep-alive sockets.
if (argv[0] !== 'serve' || code !== 0) process.exit(code);
