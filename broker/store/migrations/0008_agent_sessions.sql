-- Which relay node holds each agent's connection, with an epoch that rises at every registration:
-- with several relay nodes on one store, the newer of two connections of an agent is known to
-- every node (the older is closed with 4502), and an agent whose node died is known as such.
CREATE TABLE agent_sessions (
  agent_id  TEXT PRIMARY KEY,
  node      TEXT,
  epoch     INTEGER NOT NULL,
  at        INTEGER NOT NULL
);
