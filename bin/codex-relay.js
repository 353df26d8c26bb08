#!/usr/bin/env node
// codex-relay: the Codex adapter daemon (same as `agent-relay codex`).
import { register } from 'tsx/esm/api';

register();
const { runCli, processIo } = await import('../clients/cli/main.ts');
const { codexCommands } = await import('../adapters/codex/commands.ts');
const code = await runCli(['codex', ...process.argv.slice(2)], processIo, [codexCommands]);
process.exit(code);
