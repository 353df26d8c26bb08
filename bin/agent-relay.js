#!/usr/bin/env node
// The agent-relay command. TypeScript sources run through tsx's loader; no build step.
import { register } from 'tsx/esm/api';

register();
const [command, ...rest] = process.argv.slice(2);
if (command === 'serve') {
  const { serve } = await import('../broker/main.ts');
  await serve(rest);
} else {
  process.stderr.write(`usage: agent-relay serve [--port N] [--db PATH] [--host ADDR] [--insecure] [--help]\n`);
  process.exit(command === undefined || command === '--help' || command === 'help' ? 0 : 2);
}
