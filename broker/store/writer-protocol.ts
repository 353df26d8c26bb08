import { RelayError, type ErrorName } from '../../protocol/index.js';
import type { Outcome, WriteOp } from '../domain/store-port.js';
import { DatabaseOpenError } from './open-error.js';
import type { BatchTiming, WriterOptions } from './writer.js';

/*
 * The messages between the store (main thread) and its writer thread (writer-thread.ts). Everything
 * crosses by structured clone, which keeps an Error's message but drops its class and its own
 * fields (`code`, `kind`, `data`): errors therefore travel as WireError and are rebuilt.
 */

export type WriterData = WriterOptions;

export type Request =
  | { type: 'apply'; id: number; ops: readonly WriteOp[] }
  | { type: 'index'; id: number }
  | { type: 'probe'; id: number }
  | { type: 'pragma'; id: number; text: string }
  | { type: 'inTransaction'; id: number }
  | { type: 'close' };

export type Settings = { synchronous: string; journalMode: string };
export type Failure = { at: number; error: string } | null;

export type Reply =
  | { type: 'ready'; settings: Settings }
  | { type: 'openFailed'; error: WireError }
  | { type: 'applied'; id: number; outcomes: Outcome[]; lastFailure: Failure; timing: BatchTiming }
  | { type: 'failed'; id: number; error: WireError; lastFailure: Failure }
  | { type: 'value'; id: number; value: unknown }
  | { type: 'closed' };

export type WireError =
  | { as: 'relay'; kind: ErrorName; message: string; data: Record<string, unknown> | undefined }
  | { as: 'open'; path: string; reason: string }
  | { as: 'error'; name: string; message: string; code: string | undefined; stack: string | undefined };

export function toWire(err: unknown): WireError {
  if (err instanceof RelayError) return { as: 'relay', kind: err.kind, message: err.message, data: err.data };
  if (err instanceof DatabaseOpenError) return { as: 'open', path: err.path, reason: err.reason };
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { as: 'error', name: err.name, message: err.message, code: typeof code === 'string' ? code : undefined, stack: err.stack };
  }
  return { as: 'error', name: 'Error', message: String(err), code: undefined, stack: undefined };
}

/** The error as the main thread throws it: a RelayError or DatabaseOpenError again, else an Error with its name, code and the writer's stack. */
export function fromWire(w: WireError): Error {
  if (w.as === 'relay') return new RelayError(w.kind, w.message, w.data);
  if (w.as === 'open') return new DatabaseOpenError(w.path, w.reason);
  const err = new Error(w.message) as Error & { code?: string };
  err.name = w.name;
  if (w.code !== undefined) err.code = w.code;
  if (w.stack !== undefined) err.stack = w.stack;
  return err;
}

/** A `refused: 'error'` outcome carries its error as a WireError across the thread. */
export function outcomeToWire(o: Outcome): Outcome {
  return !o.ok && o.refused === 'error' ? { ...o, error: toWire(o.error) } : o;
}

export function outcomeFromWire(o: Outcome): Outcome {
  return !o.ok && o.refused === 'error' ? { ...o, error: fromWire(o.error as WireError) } : o;
}
