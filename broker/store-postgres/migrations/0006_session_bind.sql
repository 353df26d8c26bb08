-- An SSE stream of an agent binds the agent's connection to its node, as a registration over a
-- WebSocket does (0005's relay_with_session): every node then shows the agent connected, counts
-- it present for the stale TTL, and a newer connection of it on another node closes this one.

CREATE FUNCTION relay_op_session_bind(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_s agent_sessions;
  v_row jsonb;
BEGIN
  INSERT INTO agent_sessions (agent_id, node, epoch, at) VALUES (p_op->>'agentId', p_op->>'node', 1, (p_op->>'at')::bigint)
    ON CONFLICT (agent_id) DO UPDATE SET node = excluded.node, epoch = agent_sessions.epoch + 1, at = excluded.at
    RETURNING * INTO v_s;
  v_row := to_jsonb(v_s);
  RETURN relay_ok(jsonb_build_object('session', v_row), jsonb_build_array(jsonb_build_object('kind', 'session', 'session', v_row)));
END $$;

-- relay_apply_ops as in 0005, with session.bind.
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
      WHEN 'session.bind' THEN relay_op_session_bind(v_op)
      WHEN 'session.unbind' THEN relay_op_session_unbind(v_op)
      WHEN 'agent.insert' THEN relay_with_session(v_op, relay_apply_op(v_op, p_signed))
      WHEN 'agent.patch' THEN relay_with_session(v_op, relay_apply_op(v_op, p_signed))
      ELSE relay_apply_op(v_op, p_signed) END);
  END LOOP;
  IF cardinality(v_run) > 0 THEN v_out := v_out || relay_send_run(v_run); END IF;
  UPDATE relay_head SET last_message = relay_counter('message'), last_event = relay_counter('event'), last_task = relay_counter('task'),
      last_lease = relay_counter('lease'), lease_token = relay_counter('lease_token'), pruned_through = relay_counter('pruned_through');
  RETURN to_jsonb(v_out);
END $$;
