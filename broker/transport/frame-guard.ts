/**
 * Deepest nesting of a JSON text, counted without parsing (strings skipped), so a nesting bomb is
 * refused before JSON.parse spends stack on it. Stops counting once past `limit`.
 */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > limit) return true;
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return false;
}

/** A JSON-RPC id the relay accepts: null, a string of at most `maxLength` chars, or a safe integer. */
export function isAcceptableId(id: unknown, maxLength: number): boolean {
  if (id === null) return true;
  if (typeof id === 'string') return id.length <= maxLength;
  return typeof id === 'number' && Number.isSafeInteger(id);
}
