import { AgentTable } from './agents.js';
import type { Db } from './db.js';
import { DeliveryTable } from './deliveries.js';
import { EventTable } from './events.js';
import { LeaseTable } from './leases.js';
import { MessageTable } from './messages.js';
import { OutboxTable } from './outbox.js';
import { ReceiptTable } from './receipts.js';
import { SessionTable } from './sessions.js';
import { TaskTable } from './tasks.js';

/** The statements of every table on one connection (the writer's, or the read-only one). */
export interface TableSet {
  readonly agents: AgentTable;
  readonly messages: MessageTable;
  readonly deliveries: DeliveryTable;
  readonly tasks: TaskTable;
  readonly events: EventTable;
  readonly outbox: OutboxTable;
  readonly receipts: ReceiptTable;
  readonly leases: LeaseTable;
  readonly sessions: SessionTable;
}

/** The SQLite tables an op is applied to, inside the writer's open transaction. */
export interface Tables extends TableSet {
  prunedThrough(): number;
  setPrunedThrough(id: number): void;
}

export function openTables(db: Db): TableSet {
  const messages = new MessageTable(db);
  return {
    agents: new AgentTable(db),
    messages,
    deliveries: new DeliveryTable(db, () => messages.maxId()),
    tasks: new TaskTable(db),
    events: new EventTable(db),
    outbox: new OutboxTable(db),
    receipts: new ReceiptTable(db),
    leases: new LeaseTable(db),
    sessions: new SessionTable(db),
  };
}
