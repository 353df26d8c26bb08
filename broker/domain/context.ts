import type { Session } from './ports.js';

/** Who is calling and over what. Built by the transport; handlers never look at sockets or headers. */
export interface CallContext {
  /** The live connection, for WebSocket calls; null over HTTP. */
  session: Session | null;
  /** The verified calling agent (session registration, or agentId + agentToken over HTTP). */
  agentId: string | null;
  transport: 'ws' | 'http';
}
