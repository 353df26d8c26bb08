-- Presence across relay nodes, as the SQLite store's migration 0008: which node holds each agent's
-- connection, with an epoch that rises at every registration (the newer of two connections is
-- known on every node; the older is closed with 4502), and the nodes' heartbeats (relay_nodes,
-- database time), so an agent whose node died gets STALE_TTL_MS from the node's last heartbeat.

CREATE TABLE agent_sessions (
  agent_id  text PRIMARY KEY,
  node      text,
  epoch     bigint NOT NULL,
  at        bigint NOT NULL
);

CREATE TABLE relay_nodes (
  node_id       text PRIMARY KEY,
  started_at    bigint NOT NULL,
  heartbeat_at  bigint NOT NULL
);

-- Milliseconds since the epoch, the database's clock: the one clock every node agrees on.
CREATE FUNCTION relay_now_ms() RETURNS bigint LANGUAGE sql VOLATILE
  AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- An applied agent.insert or agent.patch with its session: bound to the op's node (the next
-- epoch, and a session change after the op's own) when it asked, else null.
CREATE FUNCTION relay_with_session(p_op json, p_out jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_s agent_sessions;
  v_row jsonb;
BEGIN
  IF NOT (p_out->>'ok')::boolean THEN RETURN p_out; END IF;
  IF json_typeof(p_op->'bind') IS DISTINCT FROM 'object' THEN RETURN jsonb_set(p_out, '{value,session}', 'null'); END IF;
  INSERT INTO agent_sessions (agent_id, node, epoch, at)
    VALUES (CASE WHEN p_op->>'op' = 'agent.insert' THEN p_op->'agent'->>'id' ELSE p_op->>'id' END, p_op->'bind'->>'node', 1, (p_op->>'at')::bigint)
    ON CONFLICT (agent_id) DO UPDATE SET node = excluded.node, epoch = agent_sessions.epoch + 1, at = excluded.at
    RETURNING * INTO v_s;
  v_row := to_jsonb(v_s);
  RETURN jsonb_set(jsonb_set(p_out, '{value,session}', v_row), '{changes}', (p_out->'changes') || jsonb_build_array(jsonb_build_object('kind', 'session', 'session', v_row)));
END $$;

CREATE FUNCTION relay_op_session_unbind(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_s agent_sessions;
  v_row jsonb;
BEGIN
  UPDATE agent_sessions SET node = NULL, at = (p_op->>'at')::bigint
    WHERE agent_id = p_op->>'agentId' AND node = p_op->>'node' AND epoch = (p_op->>'epoch')::bigint
    RETURNING * INTO v_s;
  IF NOT FOUND THEN RETURN relay_refuse('{"refused": "changed"}'); END IF;
  v_row := to_jsonb(v_s);
  RETURN relay_ok(jsonb_build_object('session', v_row), jsonb_build_array(jsonb_build_object('kind', 'session', 'session', v_row)));
END $$;

-- As in 0006, with sessions bound by registrations and unbound by disconnects.
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
