import { LIMITS } from './limits.js';

/**
 * What is wrong with a JSON text's shape, found without parsing (strings skipped), so a nesting
 * bomb or a frame of countless keys is refused before JSON.parse, zod and storage spend time on
 * it: 'depth' past `maxDepth` levels, 'keys' past `maxKeys` object keys in all (a key is a colon
 * outside strings), or null. Stops at the first limit passed.
 */
export type FrameShapeProblem = 'depth' | 'keys';

export function frameShapeProblem(text: string, maxDepth: number, maxKeys: number): FrameShapeProblem | null {
  let depth = 0;
  let keys = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
      continue;
    }
    if (c === 34) inString = true;
    else if (c === 58 /* : */) {
      if (++keys > maxKeys) return 'keys';
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > maxDepth) return 'depth';
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return null;
}

/** The refusal of a frame or body whose shape is wrong, the same on every path that reads JSON. */
export function frameShapeRefusal(problem: FrameShapeProblem, what: 'frame' | 'body'): { kind: 'invalidRequest' | 'tooLarge'; message: string } {
  return problem === 'depth'
    ? { kind: 'invalidRequest', message: `invalid request: JSON nested deeper than ${LIMITS.maxDepth} levels` }
    : { kind: 'tooLarge', message: `too large: ${what} holds more than ${LIMITS.maxFrameKeys} object keys; send fewer or smaller records (meta: at most ${LIMITS.maxMetaKeys} keys)` };
}

/** A JSON-RPC id the relay accepts: null, a string of at most `maxLength` chars, or a safe integer. */
export function isAcceptableId(id: unknown, maxLength: number): boolean {
  if (id === null) return true;
  if (typeof id === 'string') return id.length <= maxLength;
  return typeof id === 'number' && Number.isSafeInteger(id);
}
