import type { CommandGroup } from '../../clients/cli/main.js';

/** Claude Code hook commands (`agent-relay hook ...`); filled in by the plugin work. */
export const claudeCommands: CommandGroup = () => undefined;
