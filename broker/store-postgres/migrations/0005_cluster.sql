-- What several relay nodes on one database need besides the change feed (0004), and a faster
-- write of plain sends. Three parts, then the batch function that applies their ops.
--
-- ---- 1. dispatch leases on the callback outbox --------------------------------------------------
-- As the SQLite store's migration 0007: a dispatcher
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

-- ---- 2. runs of plain sends ----------------------------------------------------------------------
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

-- ---- 3. presence across nodes ---------------------------------------------------------------------
-- As the SQLite store's migration 0008: which node holds each agent's
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

-- ---- the batch ------------------------------------------------------------------------------
-- relay_apply_ops as in 0002, with the ops above: runs of plain sends applied together, the
-- outbox's lease and attempt, sessions bound by registrations and unbound by disconnects.
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
