#!/usr/bin/env node
// codex-relay: the Codex adapter daemon, same as `agent-relay codex` (compiled JavaScript from dist/).
import { runBuilt } from './run-built.js';

await runBuilt('codex-relay');
