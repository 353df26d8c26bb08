// codex-relay: the Codex adapter daemon (same as `agent-relay codex`). Built into
// dist/bin/codex-relay.js (scripts/build.mjs); bin/codex-relay.js runs that.
import { processIo, runCli } from '../../clients/cli/main.js';
import { codexCommands } from '../../adapters/codex/commands.js';

const code = await runCli(['codex', ...process.argv.slice(2)], processIo, [codexCommands]);
process.exit(code);
