import type { SearchFilter, SearchTerm } from '../domain/store-port.js';
import type { WireError } from './writer-protocol.js';

/* The messages between the store (main thread) and its search thread (search-thread.ts). */

export interface SearchData {
  path: string;
  busyTimeoutMs: number;
}

export type SearchRequest = { type: 'rank'; id: number; filter: SearchFilter } | { type: 'hits'; id: number; terms: readonly SearchTerm[]; ids: readonly number[] } | { type: 'close' };

export type SearchReply = { type: 'value'; id: number; value: unknown } | { type: 'failed'; id: number; error: WireError };
