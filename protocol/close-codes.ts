/**
 * WebSocket close codes sent by the relay. 4000–4499: reconnect and resume by cursor.
 * 4500–4999: do not retry as is. Clients branch on the range, never on the reason text.
 */
export const CLOSE_CODES = {
  shutdown: 4000,
  slowConsumer: 4001,
  missedPongs: 4002,
  rateLimited: 4003,
  unauthorized: 4500,
  protocolViolation: 4501,
  replaced: 4502,
} as const;

export function shouldReconnect(code: number): boolean {
  if (code >= 4000 && code < 4500) return true;
  if (code >= 4500 && code < 5000) return false;
  // Standard codes (1001 going away, 1006 abnormal, ...) are transport trouble: reconnect.
  return true;
}
