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
  /** message/search: the query's length (UTF-16 code units) and its words; a page of hits (each carries a snippet). */
  maxSearchQueryChars: 500,
  maxSearchTerms: 16,
  defaultSearchLimit: 20,
  maxSearchLimit: 100,
  /** A search ranks at most this many hits; its pages come from that ranking, kept this long, for this many searches at once. */
  maxSearchHits: 1000,
  searchKeptMs: 10 * 60_000,
  maxSearchesKept: 256,
  /** Object keys in one frame, counted before it is parsed (a frame of 100k keys held the loop ~700 ms). */
  maxFrameKeys: 10_000,
  /** Top-level keys of one `meta` object (agent, message, task). */
  maxMetaKeys: 64,
  /** One `meta` object as JSON, in UTF-8 bytes (what it costs to store and send). */
  maxMetaBytes: 16 * 1024,
  /** Default largest number of registered agents (configurable on the relay). */
  maxAgents: 10_000,
  /**
   * A list result's records together, in bytes of UTF-8 JSON: a page stops early past it (at least one
   * record is always returned), well under the default 4 MiB send buffer.
   */
  maxResultBytes: 1024 * 1024,
  /** Resources of one lease, and the longest resource (UTF-16 code units). */
  maxLeaseResources: 32,
  maxLeaseResourceChars: 512,
  /** A lease's time to live, in milliseconds: from one second to one day; 5 minutes when not given. */
  minLeaseTtlMs: 1000,
  maxLeaseTtlMs: 86_400_000,
  defaultLeaseTtlMs: 300_000,
  /** Leases one agent may hold at once (every acquire is checked against all leases in force). */
  maxLeasesPerAgent: 64,
  /** Longest `reason` of a lease. */
  maxLeaseReasonChars: 512,
} as const;
