/** Wire limits shared by the relay and its clients. The relay enforces them; clients may pre-check. */
export const LIMITS = {
  /** Longest string JSON-RPC id accepted. */
  maxIdLength: 128,
  /** Entries in one JSON-RPC batch. */
  maxBatch: 100,
  /** Default largest frame or HTTP body, in bytes (configurable on the relay). */
  maxFrameBytes: 1024 * 1024,
  /** Deepest JSON nesting accepted in one frame. */
  maxDepth: 32,
  /**
   * Largest message or task body, in UTF-16 code units (a string's `length`), not bytes: zod and
   * every client count it so; the byte limits (frames, bodies, send buffers) bound what it costs.
   */
  maxBodyChars: 256 * 1024,
  /** Page size ceiling for list methods. */
  maxListLimit: 1000,
  defaultListLimit: 100,
} as const;
