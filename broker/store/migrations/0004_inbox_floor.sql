-- The newest message id when the agent was first registered. No message before it can be addressed
-- to the agent (recipients are resolved at send time, and a direct message to an unknown id is
-- refused), so an inbox scan starts there instead of at the oldest message kept.
ALTER TABLE agents ADD COLUMN inbox_floor INTEGER NOT NULL DEFAULT 0;
