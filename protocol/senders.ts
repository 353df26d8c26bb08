// The sender-name rule: agents send as their agent id; observers (the dashboard, the CLI without
// an identity, scripts) and configured integrations as `ext:NAME`. Used by the schemas
// (common.ts, methods/task.ts) and by clients naming themselves. No imports: the dashboard
// bundles this file for the browser.

/** What every external sender name starts with. */
export const EXTERNAL_SENDER_PREFIX = 'ext:';

/** An external sender name: `ext:` followed by a short name. */
export const EXTERNAL_SENDER_PATTERN = /^ext:[A-Za-z0-9._:@/-]+$/;

/** The schemas' message for a name that does not match EXTERNAL_SENDER_PATTERN. */
export const EXTERNAL_SENDER_RULE = 'must be ext:NAME';

/** The external sender name for NAME (`ext:NAME`). */
export function externalSender(name: string): string {
  return `${EXTERNAL_SENDER_PREFIX}${name}`;
}
