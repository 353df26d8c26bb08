/**
 * The environment refused the relay at start-up (a database it cannot open, a port in use): the
 * operator fixes it from the message alone, so it is printed as one line, without a stack.
 */
export class StartupError extends Error {}

/** Error classes JavaScript throws for programming mistakes: a bug in the relay, not in its setup. */
const BUG_CLASSES = [TypeError, ReferenceError, RangeError, SyntaxError, EvalError, URIError];

/**
 * Whether a start-up failure is a bug whose stack is worth logging. Anything else thrown while
 * starting (our StartupError, a plain Error, a system error with a code) is a refusal of the
 * environment, reported by its message alone.
 */
export function isBug(err: unknown): boolean {
  if (err instanceof StartupError) return false;
  if (!(err instanceof Error)) return true;
  return BUG_CLASSES.some((C) => err instanceof C);
}
