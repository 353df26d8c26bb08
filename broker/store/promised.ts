/** The methods `K` of `T`, each answering a Promise of what it returned. */
export type Promised<T, K extends keyof T> = {
  readonly [P in K]: T[P] extends (...args: infer A) => infer R ? (...args: A) => Promise<R> : never;
};

/**
 * The port's asynchronous reads over one of this store's synchronous tables: the read connection
 * answers at once, so each call is the table's own, its answer (or its throw) handed over as a
 * Promise. Only the methods named are exposed: the port's, not the writer's.
 */
export function promised<T extends object, K extends keyof T>(table: T, names: readonly K[]): Promised<T, K> {
  const reads: Record<PropertyKey, unknown> = {};
  for (const name of names) {
    const method = table[name] as (...args: unknown[]) => unknown;
    reads[name] = (...args: unknown[]) => {
      try {
        return Promise.resolve(method.apply(table, args));
      } catch (err) {
        return Promise.reject(err);
      }
    };
  }
  return reads as Promised<T, K>;
}
