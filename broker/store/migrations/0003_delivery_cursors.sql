-- Delivery state at a cost that grows with agents, not with messages x recipients (PROTOCOL.md,
-- cost note). A message carries its recipients; a recipient's state comes from ranges of ids it
-- reached together (a live session's pushes, a poll's page, `message/read upTo`) and sparse exact
-- marks (an `injected` ack, reading single ids, a filtered poll). Nothing is written per recipient
-- when a message is sent or pushed.

-- ' id1 id2 ' (agent ids never contain a space): membership is instr(recipients, ' id ').
ALTER TABLE messages ADD COLUMN recipients TEXT NOT NULL DEFAULT ' ';
UPDATE messages SET recipients = ' ' || (
    SELECT group_concat(agent_id, ' ') FROM (SELECT agent_id FROM deliveries d WHERE d.message_id = messages.id ORDER BY agent_id)
  ) || ' '
  WHERE id IN (SELECT message_id FROM deliveries);

-- One exact state per (recipient, message), set by an explicit act; only ever moves forward.
CREATE TABLE delivery_marks (
  agent_id    TEXT NOT NULL,
  message_id  INTEGER NOT NULL,
  state       TEXT NOT NULL,
  at          INTEGER NOT NULL,
  PRIMARY KEY (agent_id, message_id)
) WITHOUT ROWID;
CREATE INDEX delivery_marks_message ON delivery_marks (message_id);
INSERT INTO delivery_marks (agent_id, message_id, state, at)
  SELECT agent_id, message_id, state, at FROM deliveries WHERE state != 'queued';
DROP TABLE deliveries;

-- Every message addressed to agent_id with first_id <= id <= last_id reached `state` (pushed or
-- read), no earlier than `at`. An agent's spans of one state never overlap and grow in id order.
CREATE TABLE delivery_spans (
  id        INTEGER PRIMARY KEY,
  agent_id  TEXT NOT NULL,
  state     TEXT NOT NULL,
  first_id  INTEGER NOT NULL,
  last_id   INTEGER NOT NULL,
  at        INTEGER NOT NULL
);
CREATE INDEX delivery_spans_agent ON delivery_spans (agent_id, state, last_id);
