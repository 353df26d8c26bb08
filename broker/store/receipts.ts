import type { Db } from './db.js';

const INSERT = `INSERT OR IGNORE INTO webhook_receipts (integration, delivery_id, received_at, task_id) VALUES (?, ?, ?, ?)`;
const GET = `SELECT task_id FROM webhook_receipts WHERE integration = ? AND delivery_id = ?`;
const PRUNE = `DELETE FROM webhook_receipts WHERE received_at < ?`;

/** Webhook delivery ids already accepted, for replay refusal. */
export class ReceiptTable {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      insert: db.prepare(INSERT),
      get: db.prepare<[string, string], { task_id: number | null }>(GET),
      prune: db.prepare(PRUNE),
    };
  }

  /** Record a delivery id; false when it was already recorded (a replay). */
  record(integration: string, deliveryId: string, at: number, taskId: number | null): boolean {
    return this.s.insert.run(integration, deliveryId, at, taskId).changes === 1;
  }

  seen(integration: string, deliveryId: string): { taskId: number | null } | undefined {
    const row = this.s.get.get(integration, deliveryId);
    return row ? { taskId: row.task_id } : undefined;
  }

  pruneBefore(cutoff: number): number {
    return this.s.prune.run(cutoff).changes;
  }
}
