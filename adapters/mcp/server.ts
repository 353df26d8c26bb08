import { basename } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { CallToolRequestSchema, type CallToolResult, ErrorCode, ListToolsRequestSchema, McpError, SubscribeRequestSchema, UnsubscribeRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { CliContext } from '../../clients/cli/context.js';
import { loadIdentity } from '../../clients/cli/identity-store.js';
import { RelayUnreachableError } from '../../clients/http-client.js';
import { createRelayClient, RelayRpcError, type Message, type RelayClient } from '../../clients/index.js';
import { derivedAgentId } from '../../protocol/agent-id.js';
import { describeZodError, type WireError } from '../../protocol/error-reply.js';
import { messageLine } from './format.js';
import { type TokenBook, type ToolContext, ToolInputError, TOOLS } from './tools.js';

export interface McpServeOptions {
  /** The MCP client this serves (claude, codex, ...): part of the default agent id and the agent's tags. */
  client: string;
  label?: string;
  tags: string[];
  capabilities: string[];
  channels?: string[];
  host: string;
  cwd: string;
  /** Bound on reaching the relay at start-up, ms: with the relay down the server exits, it does not hang. */
  connectTimeoutMs: number;
  version: string;
}

/** The resource whose updates announce new messages to clients that subscribe to it. */
export const INBOX_URI = 'relay://inbox';

/** `--as`, else one id per host, client and project folder (the same every time, so the inbox carries over). */
export function mcpAgentId(ctx: CliContext, o: McpServeOptions): string {
  return ctx.opts.as ?? derivedAgentId([o.host, o.client, basename(o.cwd)]);
}

/**
 * `agent-relay mcp`: an MCP server on stdin/stdout acting as one registered agent. It registers
 * over a WebSocket (resuming the stored identity), stays online while it runs, turns each tool
 * call into relay method calls, and announces each message that reaches the agent. It returns
 * when the MCP client closes stdin or stops it with SIGTERM; the agent then leaves (offline, its
 * claims released).
 */
export async function serveMcp(ctx: CliContext, o: McpServeOptions): Promise<void> {
  const id = mcpAgentId(ctx, o);
  const url = ctx.http.url;
  const stored = loadIdentity(ctx.home, id, url);
  const relay = createRelayClient({
    url,
    ...(ctx.opts.token ? { token: ctx.opts.token } : {}),
    agent: {
      id,
      label: o.label ?? `${o.client} ${basename(o.cwd)}`,
      tags: [...new Set([o.client, 'mcp', ...o.tags])],
      capabilities: o.capabilities,
      ...(o.channels ? { channels: o.channels } : {}),
      client: `${o.client}-mcp`,
      host: o.host,
      cwd: o.cwd,
    },
    ...(stored ? { agentToken: stored.token } : {}),
    whenDisconnected: 'wait',
  });
  await connectBounded(relay, url, o.connectTimeoutMs);
  const remember = () => ctx.remember({ id, token: relay.agentToken!, url, ...(relay.cursor ? { cursor: relay.cursor } : {}) });
  remember();
  relay.on('ready', remember);

  const server = new McpServer(
    { name: 'agent-relay', title: 'Agent Relay', version: o.version },
    {
      capabilities: { logging: {}, resources: { subscribe: true } },
      instructions: `You are agent ${id} on Agent Relay, where other coding agents, CI and people find each other, talk and share work. Use list_agents to see who is online, send_message to talk, inbox/read_message/search_messages for what reached you, claim/update_task/release_task for work, lease_acquire before editing files others may touch. New messages are announced as log notifications and as updates of ${INBOX_URI}.`,
    },
  );
  const toolCtx: ToolContext = { relay, url, claims: tokenBook(ctx, id, url, relay, 'claims'), leases: tokenBook(ctx, id, url, relay, 'leases'), nextMessage: (ms) => nextMessage(relay, ms) };
  serveTools(server, toolCtx);
  serveInbox(server, relay);

  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = resolve;
    // The SDK's stdio transport does not notice its client hanging up: end of stdin is the close,
    // and so is the SIGTERM (or Ctrl-C) a client stops its server with (Claude Code's `mcp list` does).
    const stop = () => void server.close();
    process.stdin.once('end', stop);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await server.connect(transport);
  relay.on('closed', (reason) => {
    if (reason) void server.sendLoggingMessage({ level: 'error', logger: 'agent-relay', data: `the relay closed this agent's connection for good: ${reason.message}` });
  });
  await closed;
  await relay.close({ leave: true });
}

/**
 * tools/list and tools/call on the SDK's low-level handlers, not McpServer.registerTool: that one
 * refuses bad arguments itself, as text without a code; here they are checked against the
 * protocol's schema and refused as the relay would refuse them (-32602 naming the field).
 */
function serveTools(server: McpServer, ctx: ToolContext): void {
  const listed = Object.entries(TOOLS).map(([name, spec]) => {
    const { $schema: _, ...inputSchema } = z.toJSONSchema(spec.input) as Record<string, unknown>;
    return { name, title: spec.title, description: spec.description, inputSchema: inputSchema as { type: 'object' } };
  });
  server.server.registerCapabilities({ tools: {} });
  server.server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: listed }));
  server.server.setRequestHandler(CallToolRequestSchema, async (req): Promise<CallToolResult> => {
    const spec = Object.hasOwn(TOOLS, req.params.name) ? TOOLS[req.params.name]! : null;
    if (!spec) throw new McpError(ErrorCode.InvalidParams, `unknown tool ${req.params.name}: the tools are ${Object.keys(TOOLS).join(', ')}`);
    const args = spec.input.safeParse(req.params.arguments ?? {});
    if (!args.success) return refusal(describeZodError(args.error));
    try {
      const answer = await spec.run(ctx, args.data);
      // The summary goes in the structured content too: Codex 0.171 gives the model that, not the text.
      return { content: [{ type: 'text', text: answer.text }], structuredContent: { summary: answer.text, ...answer.data } };
    } catch (err) {
      return refusal(err);
    }
  });
}

/** The relay's refusal as a tool error: the contract's code and message, as text and as structured content. */
function refusal(err: unknown): CallToolResult {
  const error = isWireError(err)
    ? err
    : err instanceof RelayRpcError
      ? { code: err.code, message: err.message, ...(err.data ? { data: err.data } : {}) }
      : err instanceof ToolInputError
        ? { code: err.code, message: err.message }
        : { code: null, message: err instanceof Error ? err.message : String(err) };
  const code = error.code === null ? '' : ` (${error.code})`;
  return { isError: true, content: [{ type: 'text', text: `refused${code}: ${error.message}` }], structuredContent: { error } };
}

function isWireError(err: unknown): err is WireError {
  return typeof err === 'object' && err !== null && !(err instanceof Error) && typeof (err as WireError).code === 'number';
}

/** Connect, or fail with one clear line within `ms`: an MCP client waits on a server that hangs. */
async function connectBounded(relay: RelayClient, url: string, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RelayUnreachableError(url, `no answer in ${ms / 1000} s`)), ms);
  });
  try {
    await Promise.race([relay.connect(), timeout]);
  } catch (err) {
    await relay.close();
    if (err instanceof RelayRpcError) throw err; // refused (a token): explained as such
    if (err instanceof RelayUnreachableError) throw err;
    // The client's own wording names the WebSocket address; the cause alone goes in ours.
    const cause = (err instanceof Error ? err.message : String(err)).replace(/^relay not reachable at \S+: /, '');
    throw new RelayUnreachableError(url, cause);
  } finally {
    clearTimeout(timer);
  }
}

function nextMessage(relay: RelayClient, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      relay.off('message', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    relay.on('message', done);
  });
}

/** Claim or lease tokens in the identity store, merged on every write (the CLI may hold some of this agent's too). */
function tokenBook(ctx: CliContext, id: string, url: string, relay: RelayClient, kind: 'claims' | 'leases'): TokenBook {
  return {
    get: (key) => loadIdentity(ctx.home, id, url)?.[kind]?.[String(key)],
    set: (key, token) => ctx.remember({ id, token: relay.agentToken!, url, [kind]: { [String(key)]: token } }),
  };
}

/**
 * Each message that reaches the agent is announced twice: a log notification (every MCP client
 * shows or records those) and an update of relay://inbox for clients that subscribed to it. The
 * resource reads as the unread inbox.
 */
function serveInbox(server: McpServer, relay: RelayClient): void {
  let subscribed = false;
  server.registerResource('inbox', INBOX_URI, { title: 'Unread messages', description: "This agent's unread messages, oldest first (JSON).", mimeType: 'application/json' }, async () => {
    const r = await relay.call('message/list', { unread: true });
    return { contents: [{ uri: INBOX_URI, mimeType: 'application/json', text: JSON.stringify(r.messages) }] };
  });
  server.server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    if (req.params.uri === INBOX_URI) subscribed = true;
    return {};
  });
  server.server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    if (req.params.uri === INBOX_URI) subscribed = false;
    return {};
  });
  relay.on('message', (m: Message) => {
    if (!server.isConnected()) return;
    void server.sendLoggingMessage({ level: 'info', logger: 'agent-relay', data: { event: 'message', text: `new message ${messageLine(m)}`, message: m } });
    if (subscribed) void server.server.sendResourceUpdated({ uri: INBOX_URI });
  });
}
