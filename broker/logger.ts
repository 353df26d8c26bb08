import { pino, type Logger } from 'pino';

export type { Logger };

/** Paths whose values never reach a log line. */
export const REDACT_PATHS = ['token', 'agentToken', 'secret', '*.token', '*.agentToken', '*.secret', '*.authorization', 'headers.authorization', 'req.headers.authorization', 'params.agentToken'];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: 'agent-relay' },
  };
  if (destination) return pino(options, destination as never);
  if (process.stdout.isTTY) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return pino(options);
}
