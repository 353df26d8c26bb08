-- Two things several nodes need: an agent's SSE stream as its connection on every node, and
-- routing by tag, capability, label or broadcast that no node's late copy of the agents can miss.
--
-- ---- 1. session.bind -------------------------------------------------------------------------
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

-- ---- 2. exact routing -------------------------------------------------------------------------
-- A node resolves fan-out recipients from its copy of the agents, which follows the change feed.
-- relay_head.agents_position is the feed position of the newest batch that changed an agent's
-- routing (a registration, going offline, a change of label, tags, capabilities, channels or
-- status, a prune that removed agents). An op routed from a copy at feed position `routedAt`
-- below it is refused as staleRoute, naming that position: the node plans it again once it has
-- published it (broker/domain/routed.ts). Batches run one at a time under the head row lock, so
-- the check and the change it guards against are ordered. Heartbeats change no routing.

ALTER TABLE relay_head ADD COLUMN agents_position bigint NOT NULL DEFAULT 0;

-- The op, applied with outcome p_out, changed who a fan-out target reaches.
CREATE FUNCTION relay_reroutes(p_op json, p_out jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce((p_out->>'ok')::boolean, false) AND CASE p_op->>'op'
    WHEN 'agent.insert' THEN true
    WHEN 'agent.offline' THEN true
    WHEN 'agent.patch' THEN p_op->'patch'->'label' IS NOT NULL OR p_op->'patch'->'tags' IS NOT NULL OR p_op->'patch'->'capabilities' IS NOT NULL
      OR p_op->'patch'->'channels' IS NOT NULL OR p_op->'patch'->'status' IS NOT NULL
    WHEN 'prune' THEN jsonb_array_length(p_out->'changes') > 0
    ELSE false END
$$;

-- relay_apply_ops as in 0005, with session.bind, the staleRoute check and agents_position. The
-- batch's feed position is the log's next one (relay_log_batch takes it right after this, under
-- the same lock; a batch that changed an agent always has changes to log).
CREATE OR REPLACE FUNCTION relay_apply_ops(p_ops json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  h relay_head;
  v_op json;
  v_out jsonb[] := '{}';
  v_run json[] := '{}';
  v_one jsonb;
BEGIN
  SELECT * INTO h FROM relay_head FOR UPDATE;
  PERFORM set_config('relay.message', h.last_message::text, true), set_config('relay.event', h.last_event::text, true),
          set_config('relay.task', h.last_task::text, true), set_config('relay.lease', h.last_lease::text, true),
          set_config('relay.lease_token', h.lease_token::text, true), set_config('relay.pruned_through', h.pruned_through::text, true);
  FOR v_op IN SELECT * FROM json_array_elements(p_ops) LOOP
    IF (v_op->>'routedAt') IS NOT NULL AND (v_op->>'routedAt')::bigint < h.agents_position THEN
      IF cardinality(v_run) > 0 THEN
        v_out := v_out || relay_send_run(v_run);
        v_run := '{}';
      END IF;
      v_out := array_append(v_out, relay_refuse(jsonb_build_object('refused', 'staleRoute', 'position', h.agents_position)));
      CONTINUE;
    END IF;
    IF relay_is_plain_send(v_op) THEN
      v_run := array_append(v_run, v_op);
      CONTINUE;
    END IF;
    IF cardinality(v_run) > 0 THEN
      v_out := v_out || relay_send_run(v_run);
      v_run := '{}';
    END IF;
    v_one := CASE v_op->>'op'
      WHEN 'callback.lease' THEN relay_op_callback_lease(v_op)
      WHEN 'callback.attempt' THEN relay_op_callback_attempt(v_op)
      WHEN 'session.bind' THEN relay_op_session_bind(v_op)
      WHEN 'session.unbind' THEN relay_op_session_unbind(v_op)
      WHEN 'agent.insert' THEN relay_with_session(v_op, relay_apply_op(v_op, p_signed))
      WHEN 'agent.patch' THEN relay_with_session(v_op, relay_apply_op(v_op, p_signed))
      ELSE relay_apply_op(v_op, p_signed) END;
    IF relay_reroutes(v_op, v_one) THEN PERFORM set_config('relay.agents_changed', '1', true); END IF;
    v_out := array_append(v_out, v_one);
  END LOOP;
  IF cardinality(v_run) > 0 THEN v_out := v_out || relay_send_run(v_run); END IF;
  UPDATE relay_head SET last_message = relay_counter('message'), last_event = relay_counter('event'), last_task = relay_counter('task'),
      last_lease = relay_counter('lease'), lease_token = relay_counter('lease_token'), pruned_through = relay_counter('pruned_through'),
      agents_position = CASE WHEN current_setting('relay.agents_changed', true) = '1' THEN (SELECT coalesce(max(position), 0) + 1 FROM relay_log) ELSE agents_position END;
  RETURN to_jsonb(v_out);
END $$;
