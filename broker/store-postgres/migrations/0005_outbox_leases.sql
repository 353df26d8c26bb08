-- Dispatch leases on the callback outbox, as the SQLite store's migration 0007: a dispatcher
-- leases due entries (next_at moves to the lease's end, the epoch rises) and records an attempt
-- only under the epoch it took. With several relay nodes, each callback is sent by one dispatcher
-- at a time; one that died mid-send is re-sent, same webhook-id, when its lease ends. Batches are
-- serialised by the head row lock, so the lease needs no SKIP LOCKED.

ALTER TABLE outbox ADD COLUMN lease_epoch bigint NOT NULL DEFAULT 0;

-- The oldest pending entry of each task only (a task's callbacks go in event order), due by `at`.
CREATE FUNCTION relay_op_callback_lease(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_entries jsonb;
BEGIN
  WITH due AS (
    SELECT o.id, row_number() OVER (ORDER BY o.next_at, o.id) AS n FROM outbox o
    WHERE o.state = 'pending' AND o.next_at <= v_at
      AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.task_id = o.task_id AND p.state = 'pending' AND p.id < o.id)
    ORDER BY o.next_at, o.id LIMIT (p_op->>'limit')::int
  ), leased AS (
    UPDATE outbox SET next_at = v_at + (p_op->>'leaseMs')::bigint, lease_epoch = lease_epoch + 1
    WHERE id IN (SELECT id FROM due) RETURNING *
  )
  SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY d.n), '[]') INTO v_entries FROM leased l JOIN due d USING (id);
  RETURN relay_ok(jsonb_build_object('entries', v_entries), '[]');
END $$;

CREATE FUNCTION relay_op_callback_attempt(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  UPDATE outbox SET state = p_op->>'state', attempts = attempts + 1, next_at = (p_op->>'nextAt')::bigint, last_status = (p_op->>'status')::int,
      last_error = p_op->>'error', updated_at = (p_op->>'at')::bigint
    WHERE id = (p_op->>'id')::bigint AND lease_epoch = (p_op->>'epoch')::bigint;
  IF NOT FOUND THEN RETURN relay_refuse('{"refused": "notLeased"}'); END IF;
  RETURN relay_ok('null', '[]');
END $$;

-- As in 0002, with the outbox's two ops answered by the functions above.
CREATE OR REPLACE FUNCTION relay_apply_ops(p_ops json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  h relay_head;
  v_op json;
  v_out jsonb[] := '{}';
BEGIN
  SELECT * INTO h FROM relay_head FOR UPDATE;
  PERFORM set_config('relay.message', h.last_message::text, true), set_config('relay.event', h.last_event::text, true),
          set_config('relay.task', h.last_task::text, true), set_config('relay.lease', h.last_lease::text, true),
          set_config('relay.lease_token', h.lease_token::text, true), set_config('relay.pruned_through', h.pruned_through::text, true);
  FOR v_op IN SELECT * FROM json_array_elements(p_ops) LOOP
    v_out := array_append(v_out, CASE v_op->>'op'
      WHEN 'callback.lease' THEN relay_op_callback_lease(v_op)
      WHEN 'callback.attempt' THEN relay_op_callback_attempt(v_op)
      ELSE relay_apply_op(v_op, p_signed) END);
  END LOOP;
  UPDATE relay_head SET last_message = relay_counter('message'), last_event = relay_counter('event'), last_task = relay_counter('task'),
      last_lease = relay_counter('lease'), lease_token = relay_counter('lease_token'), pruned_through = relay_counter('pruned_through');
  RETURN to_jsonb(v_out);
END $$;
