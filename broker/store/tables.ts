import type { AgentTable } from './agents.js';
import type { DeliveryTable } from './deliveries.js';
import type { EventTable } from './events.js';
import type { MessageTable } from './messages.js';
import type { OutboxTable } from './outbox.js';
import type { ReceiptTable } from './receipts.js';
import type { TaskTable } from './tasks.js';

/** The SQLite tables an op is applied to, inside the store's open transaction. */
export interface Tables {
  readonly agents: AgentTable;
  readonly messages: MessageTable;
  readonly deliveries: DeliveryTable;
  readonly tasks: TaskTable;
  readonly events: EventTable;
  readonly outbox: OutboxTable;
  readonly receipts: ReceiptTable;
  prunedThrough(): number;
  setPrunedThrough(id: number): void;
}
