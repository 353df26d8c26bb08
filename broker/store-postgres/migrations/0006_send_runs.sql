-- Consecutive plain sends of a batch (no task, no reply: nothing to check) become one INSERT of
-- all their rows instead of one PL/pgSQL call and one INSERT each: the same rows, ids and outcomes
-- (the store contract and test/postgres/same-as-sqlite check them), at about half the cost per
-- message (bench/RESULTS.md, issue 18).

CREATE FUNCTION relay_is_plain_send(p_op json) RETURNS boolean LANGUAGE sql IMMUTABLE
  AS $$ SELECT p_op->>'op' = 'message.send' AND json_typeof(p_op->'task') IS DISTINCT FROM 'object' AND (p_op->'message'->>'replyTo') IS NULL $$;

-- A run of plain sends, in order: their outcomes as relay_op_send answers them. Ids continue the
-- batch's message counter (relay_take's), each message its own thread.
CREATE FUNCTION relay_send_run(p_ops json[]) RETURNS jsonb[] LANGUAGE plpgsql AS $$
DECLARE
  v_base bigint := relay_counter('message');
  v_out jsonb[];
BEGIN
  WITH input AS (
    SELECT n, o, o->'message' AS m FROM unnest(p_ops) WITH ORDINALITY AS x(o, n)
  ), ins AS (
    INSERT INTO messages (id, from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta, recipients)
    SELECT v_base + n, m->>'from', m->>'to', m->>'channel', m->>'subject', m->>'body', NULL, v_base + n, (m->>'claimable')::boolean, NULL,
           (m->>'createdAt')::bigint, coalesce(m->'meta', 'null')::text, relay_json_texts(o->'recipients')
    FROM input
    RETURNING *
  )
  SELECT array_agg(relay_ok(jsonb_build_object('message', r.row, 'task', NULL),
                            jsonb_build_array(jsonb_build_object('kind', 'message', 'message', r.row, 'recipients', to_jsonb(i.recipients))))
                   ORDER BY i.id)
    INTO v_out
    FROM ins i, LATERAL (SELECT to_jsonb(i) - 'search' - 'recipients' AS row) r;
  PERFORM set_config('relay.message', (v_base + cardinality(p_ops))::text, true);
  RETURN v_out;
END $$;

-- As in 0005, with runs of plain sends applied together.
CREATE OR REPLACE FUNCTION relay_apply_ops(p_ops json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  h relay_head;
  v_op json;
  v_out jsonb[] := '{}';
  v_run json[] := '{}';
BEGIN
  SELECT * INTO h FROM relay_head FOR UPDATE;
  PERFORM set_config('relay.message', h.last_message::text, true), set_config('relay.event', h.last_event::text, true),
          set_config('relay.task', h.last_task::text, true), set_config('relay.lease', h.last_lease::text, true),
          set_config('relay.lease_token', h.lease_token::text, true), set_config('relay.pruned_through', h.pruned_through::text, true);
  FOR v_op IN SELECT * FROM json_array_elements(p_ops) LOOP
    IF relay_is_plain_send(v_op) THEN
      v_run := array_append(v_run, v_op);
      CONTINUE;
    END IF;
    IF cardinality(v_run) > 0 THEN
      v_out := v_out || relay_send_run(v_run);
      v_run := '{}';
    END IF;
    v_out := array_append(v_out, CASE v_op->>'op'
      WHEN 'callback.lease' THEN relay_op_callback_lease(v_op)
      WHEN 'callback.attempt' THEN relay_op_callback_attempt(v_op)
      ELSE relay_apply_op(v_op, p_signed) END);
  END LOOP;
  IF cardinality(v_run) > 0 THEN v_out := v_out || relay_send_run(v_run); END IF;
  UPDATE relay_head SET last_message = relay_counter('message'), last_event = relay_counter('event'), last_task = relay_counter('task'),
      last_lease = relay_counter('lease'), lease_token = relay_counter('lease_token'), pruned_through = relay_counter('pruned_through');
  RETURN to_jsonb(v_out);
END $$;
