-- The change feed. Every batch that changed something is logged under the next position, with its
-- changes in commit order, and announced with NOTIFY relay_feed when it commits. Every node reads
-- the log in position order and publishes from it (broker/store-postgres/feed.ts): its own batches
-- and every other node's, the same way, so pushes on every node follow commit order.
--
-- Positions have no holes and are visible in order: a batch takes max(position) + 1 while it holds
-- the head row lock (relay_apply_ops), which it keeps until it has committed, so the next batch
-- can only take its position after this one is visible. The newest row is never pruned, so a
-- position is never handed out twice.

CREATE TABLE relay_log (
  position    bigint PRIMARY KEY,
  changes     jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX relay_log_created ON relay_log (created_at);

-- A lost reply's lookup answers the batch's position with its outcomes.
ALTER TABLE relay_batches ADD COLUMN position bigint;

-- Log a batch's changes (all its ops', in order) under the next position and announce it; NULL
-- when the batch changed nothing anyone publishes. Runs inside the batch's transaction, after
-- relay_apply_ops took the head row lock.
CREATE FUNCTION relay_log_batch(p_outcomes jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_changes jsonb;
  v_position bigint;
BEGIN
  SELECT jsonb_agg(c.v ORDER BY o.i, c.j) INTO v_changes
    FROM jsonb_array_elements(p_outcomes) WITH ORDINALITY AS o(v, i),
         jsonb_array_elements(o.v->'changes') WITH ORDINALITY AS c(v, j);
  IF v_changes IS NULL THEN RETURN NULL; END IF;
  SELECT coalesce(max(position), 0) + 1 INTO v_position FROM relay_log;
  INSERT INTO relay_log (position, changes) VALUES (v_position, v_changes);
  PERFORM pg_notify('relay_feed', v_position::text);
  RETURN v_position;
END $$;

-- Forget what no lost reply and no node's feed can ask about any more (a node further behind than
-- this resynchronises: feed.ts). Called now and then by relay_apply.
CREATE FUNCTION relay_forget_old() RETURNS void LANGUAGE sql AS $$
  DELETE FROM relay_batches WHERE created_at < now() - interval '15 minutes';
  DELETE FROM relay_log WHERE created_at < now() - interval '15 minutes' AND position < (SELECT max(position) FROM relay_log);
$$;

-- One node's batch in one call, as before (0002), now also logged: {outcomes, position}.
CREATE OR REPLACE FUNCTION relay_apply(p_batch json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_out jsonb := relay_apply_ops(p_batch->'ops', relay_json_texts(p_batch->'signed'));
  v_position bigint := relay_log_batch(v_out);
BEGIN
  INSERT INTO relay_batches (id, outcomes, position) VALUES (p_batch->>'id', v_out, v_position);
  IF random() < 0.01 THEN PERFORM relay_forget_old(); END IF;
  RETURN jsonb_build_object('outcomes', v_out, 'position', v_position);
END $$;
