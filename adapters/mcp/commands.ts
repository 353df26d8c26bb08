import { hostname } from 'node:os';
import type { Command } from 'commander';
import { list } from '../../clients/cli/context.js';
import type { CommandGroup } from '../../clients/cli/main.js';

// The MCP SDK and the server load when `agent-relay mcp` runs, not for every command.
const server = () => import('./server.js');

/** Reaching the relay at start-up: past this the server exits with the reason (an MCP client would wait on a hang). */
const CONNECT_TIMEOUT_MS = 5000;

/** `agent-relay mcp`: the MCP server over stdio (README "MCP server"). */
export const mcpCommands: CommandGroup = (program: Command, run) => {
  program
    .command('mcp')
    .description('run an MCP server on stdin/stdout as a relay agent (for Claude Code, Codex and other MCP clients)')
    .option('--client <name>', 'the MCP client it serves: part of the default agent id (HOST-CLIENT-FOLDER) and a tag', 'mcp')
    .option('--label <text>', 'agent label (default: "CLIENT FOLDER")')
    .option('--tags <a,b>', 'extra tags', list, [])
    .option('--caps <a,b>', 'capabilities', list, ['chat'])
    .option('--channels <a,b>', 'channels to join', list)
    .action(
      run(async (ctx, o: { client: string; label?: string; tags: string[]; caps: string[]; channels?: string[] }) => {
        await (await server()).serveMcp(ctx, {
          client: o.client,
          ...(o.label ? { label: o.label } : {}),
          tags: o.tags,
          capabilities: o.caps,
          ...(o.channels ? { channels: o.channels } : {}),
          host: hostname(),
          cwd: process.cwd(),
          connectTimeoutMs: CONNECT_TIMEOUT_MS,
          version: '0.1.0',
        });
      }),
    );
};
