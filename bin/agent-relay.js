#!/usr/bin/env node
// The agent-relay command (compiled JavaScript from dist/, built by npm run build).
import { runBuilt } from './run-built.js';

await runBuilt('agent-relay');
