-- The write path: relay_apply(batch json) applies a node's whole batch in one call (one round
-- trip), as broker/store/apply.ts and apply-leases.ts do inside SQLite's transaction, op for op.
-- Each op checks its preconditions with conditional statements and answers its outcome as jsonb:
-- {"ok":true,"value":…,"changes":[…]} or {"ok":false,"refused":"…",…,"changes":[…]}. Rows in the
-- outcomes are row images (to_jsonb of the row: column names, JSON columns as text) that
-- broker/store-postgres/rows.ts turns into protocol objects, the same functions as the reads use.
-- No EXCEPTION blocks or savepoints here: each one starts a subtransaction, and past 64 of them
-- every session slows (measured on PostgreSQL 15). An op that raises fails the call; the store then
-- applies the batch op by op (apply-fallback.ts).
--
-- The input is `json`, not `jsonb`: json keeps the text as sent, so meta objects and event data
-- are stored with their keys in the relay's order.
--
-- Ids: relay_apply_ops locks relay_head FOR UPDATE, copies its counters into transaction-local
-- settings (relay.message, …) that relay_take() advances, and writes them back once at its end.
-- (An UPDATE of the head per id would pile up row versions the next update must scan past.)

CREATE FUNCTION relay_take(p_counter text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v bigint := current_setting('relay.' || p_counter)::bigint + 1;
BEGIN
  PERFORM set_config('relay.' || p_counter, v::text, true);
  RETURN v;
END $$;

CREATE FUNCTION relay_counter(p_counter text) RETURNS bigint LANGUAGE sql
  AS $$ SELECT current_setting('relay.' || p_counter)::bigint $$;

-- ---- JSON text, built as JavaScript's JSON.stringify writes it ------------------------------

-- A value as compact JSON text (to_json escapes strings as JSON.stringify does); SQL NULL is null.
CREATE FUNCTION relay_j(p anyelement) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT coalesce(to_json(p)::text, 'null') $$;

-- {"k1":v1,"k2":v2,…} from key, JSON-text pairs, in the order given.
CREATE FUNCTION relay_obj(VARIADIC p_kv text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT '{' || coalesce(string_agg(to_json(p_kv[i])::text || ':' || p_kv[i + 1], ',' ORDER BY i), '') || '}'
  FROM generate_series(1, coalesce(array_length(p_kv, 1), 0), 2) AS i
$$;

-- new Date(at).toISOString()
CREATE FUNCTION relay_iso(p_at bigint) RETURNS text LANGUAGE sql IMMUTABLE
  AS $$ SELECT to_char(timestamp 'epoch' + p_at * interval '1 millisecond', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

-- A task as taskFromRow (broker/store/tasks.ts) builds it, as JSON text.
CREATE FUNCTION relay_task_text(t tasks) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT relay_obj(
    'id', relay_j(t.id), 'title', relay_j(t.title), 'body', relay_j(t.body), 'target', relay_j(t.target),
    'channel', relay_j(t.channel), 'status', relay_j(t.status), 'progress', relay_j(t.progress),
    'claimedBy', relay_j(t.claimed_by), 'claimedAt', relay_j(t.claimed_at), 'dedupeKey', relay_j(t.dedupe_key),
    'source', relay_j(t.source), 'occurrences', relay_j(t.occurrences), 'messageId', relay_j(t.message_id),
    'callbackUrl', relay_j(t.callback_url), 'attempts', relay_j(t.attempts), 'createdAt', relay_j(t.created_at),
    'updatedAt', relay_j(t.updated_at), 'closedAt', relay_j(t.closed_at), 'meta', t.meta)
$$;

-- An event as EventTable.append returns it ({...e, id}), as JSON text.
CREATE FUNCTION relay_event_text(e events) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT relay_obj('at', relay_j(e.at), 'kind', relay_j(e.kind), 'taskId', relay_j(e.task_id), 'agentId', relay_j(e.agent_id), 'data', e.data, 'id', relay_j(e.id))
$$;

-- callbackPayload (broker/domain/store-port.ts): the body the outbox signs and sends.
CREATE FUNCTION relay_callback_payload(t tasks, e events) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT relay_obj('type', relay_j(e.kind), 'timestamp', relay_j(relay_iso(e.at)), 'data', relay_obj('event', relay_event_text(e), 'task', relay_task_text(t)))
$$;

-- ---- outcomes ---------------------------------------------------------------------------------

CREATE FUNCTION relay_ok(p_value jsonb, p_changes jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
  AS $$ SELECT jsonb_build_object('ok', true, 'value', p_value, 'changes', p_changes) $$;

CREATE FUNCTION relay_refuse(p_refusal jsonb, p_changes jsonb DEFAULT '[]') RETURNS jsonb LANGUAGE sql IMMUTABLE
  AS $$ SELECT jsonb_build_object('ok', false) || p_refusal || jsonb_build_object('changes', p_changes) $$;

CREATE FUNCTION relay_message_row(m messages) RETURNS jsonb LANGUAGE sql IMMUTABLE
  AS $$ SELECT to_jsonb(m) - 'search' - 'recipients' $$;

CREATE FUNCTION relay_is_terminal(p_status text) RETURNS boolean LANGUAGE sql IMMUTABLE
  AS $$ SELECT p_status IN ('done', 'failed', 'canceled') $$;

CREATE FUNCTION relay_json_texts(p json) RETURNS text[] LANGUAGE sql IMMUTABLE
  AS $$ SELECT coalesce(array_agg(x), '{}') FROM json_array_elements_text(p) AS x $$;

-- ---- rows -------------------------------------------------------------------------------------

CREATE FUNCTION relay_max_message() RETURNS bigint LANGUAGE sql
  AS $$ SELECT coalesce(max(id), 0) FROM messages $$;

-- A message that starts a thread is its root: its thread id is its own id.
CREATE FUNCTION relay_insert_message(
  p_from text, p_to text, p_channel text, p_subject text, p_body text, p_reply_to bigint, p_thread bigint,
  p_claimable boolean, p_task bigint, p_created bigint, p_meta text, p_recipients text[]
) RETURNS messages LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint := relay_take('message');
  v_m messages;
BEGIN
  INSERT INTO messages (id, from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta, recipients)
  VALUES (v_id, p_from, p_to, p_channel, p_subject, p_body, p_reply_to, coalesce(p_thread, v_id), p_claimable, p_task, p_created, p_meta, p_recipients)
  RETURNING * INTO v_m;
  RETURN v_m;
END $$;

CREATE FUNCTION relay_message_change(m messages) RETURNS jsonb LANGUAGE sql IMMUTABLE
  AS $$ SELECT jsonb_build_object('kind', 'message', 'message', relay_message_row(m), 'recipients', to_jsonb(m.recipients)) $$;

CREATE FUNCTION relay_append_event(p_at bigint, p_kind text, p_task bigint, p_agent text, p_data text) RETURNS events LANGUAGE plpgsql AS $$
DECLARE
  v_e events;
BEGIN
  INSERT INTO events (id, at, kind, task_id, agent_id, data) VALUES (relay_take('event'), p_at, p_kind, p_task, p_agent, p_data) RETURNING * INTO v_e;
  RETURN v_e;
END $$;

-- A task event; a task with a callback URL gets it in the outbox in the same transaction.
-- Returns the changes: [callback?, task].
CREATE FUNCTION relay_task_event(p_at bigint, p_task tasks, p_kind text, p_agent text, p_data text, p_also jsonb, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_e events := relay_append_event(p_at, p_kind, p_task.id, p_agent, p_data);
  v_changes jsonb := '[]';
BEGIN
  IF coalesce(p_task.callback_url, '') <> '' THEN
    INSERT INTO outbox (webhook_id, task_id, event_id, url, signer, payload, next_at, created_at, updated_at)
    VALUES ('msg_' || v_e.id, p_task.id, v_e.id, p_task.callback_url,
            CASE WHEN p_task.source = ANY (p_signed) THEN 'integration:' || p_task.source ELSE 'relay' END,
            relay_callback_payload(p_task, v_e), p_at, p_at, p_at);
    v_changes := v_changes || '[{"kind": "callback"}]';
  END IF;
  RETURN v_changes || jsonb_build_array(jsonb_build_object('kind', 'task', 'task', to_jsonb(p_task), 'event', to_jsonb(v_e), 'alsoAgents', p_also));
END $$;

CREATE FUNCTION relay_insert_task(p_at bigint, p_in json, p_source text) RETURNS tasks LANGUAGE plpgsql AS $$
DECLARE
  v_t tasks;
BEGIN
  INSERT INTO tasks (id, title, body, target, channel, status, dedupe_key, source, callback_url, created_at, updated_at, meta)
  VALUES (relay_take('task'), p_in->>'title', p_in->>'body', p_in->>'target', p_in->>'channel', 'open', p_in->>'dedupeKey', p_source,
          p_in->>'callbackUrl', p_at, p_at, coalesce(p_in->'meta', 'null')::text)
  RETURNING * INTO v_t;
  RETURN v_t;
END $$;

-- Offer an open task to its target as a claimable message (on creation and on every release).
CREATE FUNCTION relay_announce(p_at bigint, t tasks, p_announce json) RETURNS messages LANGUAGE sql AS $$
  SELECT relay_insert_message(p_announce->>'from', t.target, t.channel, t.title, coalesce(t.body, t.title), NULL, NULL, true, t.id, p_at, '{}',
                              relay_json_texts(p_announce->'recipients'))
$$;

-- Return a claimed task to open, record why, announce it again: {task, changes}.
CREATE FUNCTION relay_release(p_at bigint, t tasks, p_release json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_prev text := t.claimed_by;
  v_t tasks;
  v_changes jsonb;
BEGIN
  UPDATE tasks SET status = 'open', claimed_by = NULL, claimed_at = NULL, updated_at = p_at WHERE id = t.id RETURNING * INTO v_t;
  v_changes := relay_task_event(p_at, v_t, 'task.released', v_prev,
    relay_obj('reason', relay_j(p_release->>'reason'), 'by', relay_j(p_release->>'by'), 'previousOwner', relay_j(v_prev)),
    jsonb_build_array(v_prev), p_signed);
  v_changes := v_changes || jsonb_build_array(relay_message_change(relay_announce(p_at, v_t, p_release->'announce')));
  RETURN jsonb_build_object('task', to_jsonb(v_t), 'changes', v_changes);
END $$;

-- The refusal of a guarded task op planned on `p_guard`, or NULL when the task is still so.
CREATE FUNCTION relay_guard(p_task bigint, p_guard json) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  t tasks;
BEGIN
  SELECT * INTO t FROM tasks WHERE id = p_task;
  IF NOT FOUND THEN RETURN 'notFound'; END IF;
  IF relay_is_terminal(t.status) OR t.status <> p_guard->>'status' OR t.claimed_by IS DISTINCT FROM p_guard->>'claimedBy'
     OR t.attempts <> (p_guard->>'attempts')::int THEN
    RETURN 'changed';
  END IF;
  RETURN NULL;
END $$;

-- ---- delivery states (broker/store/deliveries.ts) ---------------------------------------------

CREATE FUNCTION relay_state_rank(p_state text) RETURNS int LANGUAGE sql IMMUTABLE
  AS $$ SELECT CASE p_state WHEN 'queued' THEN 0 WHEN 'pushed' THEN 1 WHEN 'injected' THEN 2 ELSE 3 END $$;

-- One recipient's delivery: the highest of its exact mark and the spans covering the message;
-- no row when the message was not addressed to it. Used by the reads too.
CREATE FUNCTION relay_delivery(p_agent text, p_message bigint) RETURNS TABLE (state text, at bigint) LANGUAGE plpgsql AS $$
DECLARE
  v_created bigint;
  v_state text := 'queued';
  v_at bigint;
  v_s text;
  v_t bigint;
  v_first bigint;
  v_span_at bigint;
BEGIN
  SELECT m.created_at INTO v_created FROM messages m WHERE m.id = p_message AND p_agent = ANY (m.recipients);
  IF NOT FOUND THEN RETURN; END IF;
  v_at := v_created;
  SELECT k.state, k.at INTO v_s, v_t FROM delivery_marks k WHERE k.agent_id = p_agent AND k.message_id = p_message;
  IF FOUND THEN
    IF relay_state_rank(v_s) > relay_state_rank(v_state) THEN v_state := v_s; v_at := v_t;
    ELSIF v_s = v_state AND v_t < v_at THEN v_at := v_t;
    END IF;
  END IF;
  FOREACH v_s IN ARRAY ARRAY['pushed', 'read'] LOOP
    -- An agent's spans of one state do not overlap and grow in id order: the first one ending at
    -- or after the id is the only one that can hold it.
    SELECT sp.first_id, sp.at INTO v_first, v_span_at FROM delivery_spans sp
      WHERE sp.agent_id = p_agent AND sp.state = v_s AND sp.last_id >= p_message ORDER BY sp.last_id LIMIT 1;
    -- A span opened before the message was sent reached it when it was sent, not before.
    IF FOUND AND v_first <= p_message THEN
      v_t := greatest(v_span_at, v_created);
      IF relay_state_rank(v_s) > relay_state_rank(v_state) THEN v_state := v_s; v_at := v_t;
      ELSIF v_s = v_state AND v_t < v_at THEN v_at := v_t;
      END IF;
    END IF;
  END LOOP;
  state := v_state;
  at := v_at;
  RETURN NEXT;
END $$;

-- A mark only moves forward.
CREATE FUNCTION relay_advance(p_agent text, p_message bigint, p_state text, p_at bigint) RETURNS void LANGUAGE sql AS $$
  INSERT INTO delivery_marks (agent_id, message_id, state, at) VALUES (p_agent, p_message, p_state, p_at)
  ON CONFLICT (agent_id, message_id) DO UPDATE SET state = excluded.state, at = excluded.at
  WHERE relay_state_rank(excluded.state) > relay_state_rank(delivery_marks.state)
$$;

CREATE FUNCTION relay_read_through(p_agent text) RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce((SELECT last_id FROM delivery_spans WHERE agent_id = p_agent AND state = 'read' ORDER BY last_id DESC LIMIT 1), 0)
$$;

CREATE FUNCTION relay_insert_span(p_agent text, p_state text, p_first bigint, p_last bigint, p_at bigint) RETURNS bigint LANGUAGE sql AS $$
  INSERT INTO delivery_spans (agent_id, state, first_id, last_id, at) VALUES (p_agent, p_state, p_first, p_last, p_at) RETURNING id
$$;

-- Mark single messages read; how many of them were addressed to the agent and unread. Then move
-- the read-through cursor up to just before the agent's first unread message.
CREATE FUNCTION relay_mark_read(p_agent text, p_ids json, p_at bigint) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
  v_state text;
  v_n int := 0;
  v_from bigint;
  v_first bigint;
  v_through bigint;
BEGIN
  FOR v_id IN SELECT DISTINCT x::bigint FROM json_array_elements_text(p_ids) AS x LOOP
    SELECT d.state INTO v_state FROM relay_delivery(p_agent, v_id) d;
    IF NOT FOUND OR v_state = 'read' THEN CONTINUE; END IF;
    PERFORM relay_advance(p_agent, v_id, 'read', p_at);
    v_n := v_n + 1;
  END LOOP;
  IF v_n > 0 THEN
    v_from := relay_read_through(p_agent);
    SELECT m.id INTO v_first FROM messages m
      WHERE m.id > v_from AND p_agent = ANY (m.recipients)
        AND NOT EXISTS (SELECT 1 FROM delivery_marks k WHERE k.agent_id = p_agent AND k.message_id = m.id AND k.state = 'read')
      ORDER BY m.id LIMIT 1;
    v_through := CASE WHEN v_first IS NOT NULL THEN v_first - 1 ELSE relay_max_message() END;
    IF v_through > v_from THEN PERFORM relay_insert_span(p_agent, 'read', v_from + 1, v_through, p_at); END IF;
  END IF;
  RETURN v_n;
END $$;

-- Mark everything addressed to the agent up to `p_up_to` read (never past the newest message).
CREATE FUNCTION relay_mark_read_up_to(p_agent text, p_up_to bigint, p_at bigint) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  v_from bigint := relay_read_through(p_agent);
  v_to bigint := least(p_up_to, relay_max_message());
  v_n int;
BEGIN
  IF v_to <= v_from THEN RETURN 0; END IF;
  SELECT count(*) INTO v_n FROM messages m
    WHERE m.id > v_from AND m.id <= v_to AND p_agent = ANY (m.recipients)
      AND NOT EXISTS (SELECT 1 FROM delivery_marks k WHERE k.agent_id = p_agent AND k.message_id = m.id AND k.state = 'read');
  PERFORM relay_insert_span(p_agent, 'read', v_from + 1, v_to, p_at);
  RETURN v_n;
END $$;

-- ---- lease resources overlap (protocol/lease-patterns.ts, the same decision) --------------------

-- Whether some non-empty segment matches both segment globs (`*` = any characters): reachability
-- over positions (i, j), filled from the ends backwards.
CREATE FUNCTION relay_segments_overlap(a text, b text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  la int := length(a);
  lb int := length(b);
  w int := lb + 2;
  r boolean[];
  i int;
  j int;
  ca text;
  cb text;
  v boolean;
BEGIN
  r := array_fill(false, ARRAY[(la + 2) * w]);
  FOR i IN REVERSE la..0 LOOP
    FOR j IN REVERSE lb..0 LOOP
      IF i = la AND j = lb THEN
        v := true;
      ELSE
        ca := CASE WHEN i < la THEN substr(a, i + 1, 1) END;
        cb := CASE WHEN j < lb THEN substr(b, j + 1, 1) END;
        v := false;
        IF ca = '*' THEN v := v OR r[(i + 1) * w + j + 1]; END IF;
        IF cb = '*' THEN v := v OR r[i * w + j + 2]; END IF;
        IF ca IS NOT NULL AND cb IS NOT NULL THEN
          IF ca = '*' AND cb <> '*' THEN v := v OR r[i * w + j + 2];
          ELSIF cb = '*' AND ca <> '*' THEN v := v OR r[(i + 1) * w + j + 1];
          ELSIF ca = cb AND ca <> '*' THEN v := v OR r[(i + 1) * w + j + 2];
          END IF;
        END IF;
      END IF;
      r[i * w + j + 1] := v;
    END LOOP;
  END LOOP;
  RETURN r[1];
END $$;

-- Whether some path lies under both segment lists (each read as PATTERN/**).
CREATE FUNCTION relay_paths_overlap(a text[], b text[]) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  pa text[] := a || '**'::text;
  pb text[] := b || '**'::text;
  la int := array_length(pa, 1);
  lb int := array_length(pb, 1);
  w int := lb + 2;
  r boolean[];
  i int;
  j int;
  sa text;
  sb text;
  v boolean;
BEGIN
  r := array_fill(false, ARRAY[(la + 2) * w]);
  FOR i IN REVERSE la..0 LOOP
    FOR j IN REVERSE lb..0 LOOP
      IF i = la AND j = lb THEN
        v := true;
      ELSE
        sa := CASE WHEN i < la THEN pa[i + 1] END;
        sb := CASE WHEN j < lb THEN pb[j + 1] END;
        v := false;
        IF sa = '**' THEN v := r[(i + 1) * w + j + 1] OR (sb IS NOT NULL AND sb <> '**' AND r[i * w + j + 2]); END IF;
        IF NOT v AND sb = '**' THEN v := r[i * w + j + 2] OR (sa IS NOT NULL AND sa <> '**' AND r[(i + 1) * w + j + 1]); END IF;
        IF NOT v AND sa IS NOT NULL AND sb IS NOT NULL AND sa <> '**' AND sb <> '**' THEN
          v := r[(i + 1) * w + j + 2] AND relay_segments_overlap(sa, sb);
        END IF;
      END IF;
      r[i * w + j + 1] := v;
    END LOOP;
  END LOOP;
  RETURN r[1];
END $$;

-- Whether two valid resources can name a common thing: a name (SCHEME:NAME) only itself, a path
-- pattern another path pattern sharing a path.
CREATE FUNCTION relay_resources_overlap(a text, b text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN a ~ '^[a-z][a-z0-9+.-]+:' OR b ~ '^[a-z][a-z0-9+.-]+:' THEN a ~ '^[a-z][a-z0-9+.-]+:' AND b ~ '^[a-z][a-z0-9+.-]+:' AND a = b
    ELSE relay_paths_overlap(string_to_array(a, '/'), string_to_array(b, '/'))
  END
$$;

-- The first resource held that meets one asked for: {"held", "requested"}, or NULL.
CREATE FUNCTION relay_first_overlap(p_held json, p_requested json) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('held', h, 'requested', q)
  FROM json_array_elements_text(p_held) WITH ORDINALITY AS hs(h, hn), json_array_elements_text(p_requested) WITH ORDINALITY AS qs(q, qn)
  WHERE relay_resources_overlap(h, q)
  ORDER BY hn, qn LIMIT 1
$$;

-- ---- leases (broker/store/apply-leases.ts) ----------------------------------------------------

CREATE FUNCTION relay_lease_event(p_at bigint, l leases, p_kind text, p_rest text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  -- {leaseId, token, ...data}: p_rest is the data's own members as JSON text ("…":…,"…":…).
  v_data text := '{"leaseId":' || l.id || ',"token":' || l.token || CASE WHEN p_rest = '' THEN '' ELSE ',' || p_rest END || '}';
  v_e events := relay_append_event(p_at, p_kind, NULL, l.agent_id, v_data);
BEGIN
  RETURN jsonb_build_object('kind', 'lease', 'lease', to_jsonb(l), 'event', to_jsonb(v_e));
END $$;

-- End a lease not ended yet (else report it as it is), with its event: the change.
CREATE FUNCTION relay_end_lease(p_at bigint, l leases, p_ended_by text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_l leases;
BEGIN
  UPDATE leases SET released_at = p_at, ended_by = p_ended_by WHERE id = l.id AND released_at IS NULL RETURNING * INTO v_l;
  IF NOT FOUND THEN v_l := l; END IF;
  RETURN relay_lease_event(p_at, v_l, 'lease.released', '"reason":' || relay_j(p_ended_by));
END $$;

-- End every lease whose TTL passed by `p_at`, oldest first: {leases, changes}.
CREATE FUNCTION relay_expire_leases(p_at bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  l leases;
  v_change jsonb;
  v_leases jsonb := '[]';
  v_changes jsonb := '[]';
BEGIN
  FOR l IN SELECT * FROM leases WHERE released_at IS NULL AND expires_at <= p_at ORDER BY id LOOP
    v_change := relay_end_lease(p_at, l, 'expired');
    v_leases := v_leases || jsonb_build_array(v_change->'lease');
    v_changes := v_changes || jsonb_build_array(v_change);
  END LOOP;
  RETURN jsonb_build_object('leases', v_leases, 'changes', v_changes);
END $$;

CREATE FUNCTION relay_op_lease_acquire(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_agent text := p_op->>'agentId';
  v_mode text := p_op->>'mode';
  v_changes jsonb := relay_expire_leases(v_at)->'changes';
  v_own int;
  v_conflicts jsonb := '[]';
  v_meet jsonb;
  held leases;
  l leases;
BEGIN
  -- Nothing would end it but its TTL: going offline is what releases an agent's leases.
  IF (SELECT status FROM agents WHERE id = v_agent) = 'offline' THEN RETURN relay_refuse('{"refused": "holderOffline"}', v_changes); END IF;
  SELECT count(*) INTO v_own FROM leases WHERE released_at IS NULL AND expires_at > v_at AND agent_id = v_agent;
  IF v_own >= (p_op->>'maxHeld')::int THEN RETURN relay_refuse(jsonb_build_object('refused', 'full', 'count', v_own), v_changes); END IF;
  FOR held IN SELECT * FROM leases WHERE released_at IS NULL AND expires_at > v_at ORDER BY id LOOP
    CONTINUE WHEN held.agent_id = v_agent OR (held.mode = 'shared' AND v_mode = 'shared');
    v_meet := relay_first_overlap(held.resources::json, p_op->'resources');
    IF v_meet IS NOT NULL THEN v_conflicts := v_conflicts || jsonb_build_array(jsonb_build_object('lease', to_jsonb(held)) || v_meet); END IF;
  END LOOP;
  IF jsonb_array_length(v_conflicts) > 0 THEN RETURN relay_refuse(jsonb_build_object('refused', 'leaseConflict', 'conflicts', v_conflicts), v_changes); END IF;
  INSERT INTO leases (id, agent_id, mode, resources, reason, token, ttl_ms, acquired_at, renewed_at, expires_at)
  VALUES (relay_take('lease'), v_agent, v_mode, (p_op->'resources')::text, p_op->>'reason', relay_take('lease_token'), (p_op->>'ttlMs')::bigint,
          v_at, v_at, v_at + (p_op->>'ttlMs')::bigint)
  RETURNING * INTO l;
  v_changes := v_changes || jsonb_build_array(relay_lease_event(v_at, l, 'lease.acquired',
    '"mode":' || relay_j(l.mode) || ',"resources":' || l.resources || ',"reason":' || relay_j(l.reason) || ',"expiresAt":' || l.expires_at));
  RETURN relay_ok(jsonb_build_object('lease', to_jsonb(l)), v_changes);
END $$;

-- renew and release: the lease must be in force, the presenter's, presented with its newest token.
CREATE FUNCTION relay_op_lease_hold(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_hold json := p_op->'hold';
  v_changes jsonb := relay_expire_leases(v_at)->'changes';
  held leases;
  l leases;
  v_ttl bigint;
  v_change jsonb;
BEGIN
  SELECT * INTO held FROM leases WHERE id = (v_hold->>'leaseId')::bigint;
  IF NOT FOUND THEN RETURN relay_refuse('{"refused": "notFound"}', v_changes); END IF;
  IF held.released_at IS NOT NULL OR held.agent_id <> v_hold->>'agentId' OR held.token <> (v_hold->>'token')::bigint THEN
    RETURN relay_refuse(jsonb_build_object('refused', 'leaseNotHeld', 'lease', to_jsonb(held)), v_changes);
  END IF;
  IF p_op->>'op' = 'lease.release' THEN
    v_change := relay_end_lease(v_at, held, 'released');
    RETURN relay_ok(jsonb_build_object('lease', v_change->'lease'), v_changes || jsonb_build_array(v_change));
  END IF;
  v_ttl := coalesce((p_op->>'ttlMs')::bigint, held.ttl_ms);
  UPDATE leases SET token = relay_take('lease_token'), ttl_ms = v_ttl, renewed_at = v_at, expires_at = v_at + v_ttl WHERE id = held.id RETURNING * INTO l;
  v_changes := v_changes || jsonb_build_array(relay_lease_event(v_at, l, 'lease.renewed', '"previousToken":' || held.token || ',"expiresAt":' || l.expires_at));
  RETURN relay_ok(jsonb_build_object('lease', to_jsonb(l)), v_changes);
END $$;

-- ---- messages and tasks (broker/store/apply.ts) -------------------------------------------------

CREATE FUNCTION relay_op_send(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_msg json := p_op->'message';
  v_reply bigint := (v_msg->>'replyTo')::bigint;
  v_thread bigint;
  v_task tasks;
  v_has_task boolean := json_typeof(p_op->'task') = 'object';
  v_m messages;
  v_changes jsonb := '[]';
BEGIN
  IF v_reply IS NOT NULL THEN
    SELECT thread_id INTO v_thread FROM messages WHERE id = v_reply;
    IF NOT FOUND THEN RETURN relay_refuse('{"refused": "replyToMissing"}'); END IF;
  END IF;
  IF v_has_task THEN
    v_task := relay_insert_task(v_at, p_op->'task', p_op->'task'->>'source');
    v_changes := relay_task_event(v_at, v_task, 'task.created', NULL, relay_obj('source', relay_j(v_task.source), 'target', relay_j(v_task.target)), '[]', p_signed);
  END IF;
  v_m := relay_insert_message(v_msg->>'from', v_msg->>'to', v_msg->>'channel', v_msg->>'subject', v_msg->>'body', v_reply, v_thread,
                              (v_msg->>'claimable')::boolean, v_task.id, (v_msg->>'createdAt')::bigint, coalesce(v_msg->'meta', 'null')::text,
                              relay_json_texts(p_op->'recipients'));
  v_changes := v_changes || jsonb_build_array(relay_message_change(v_m));
  IF v_has_task THEN
    UPDATE tasks SET message_id = v_m.id WHERE id = v_task.id RETURNING * INTO v_task;
  END IF;
  RETURN relay_ok(jsonb_build_object('message', relay_message_row(v_m), 'task', CASE WHEN v_has_task THEN to_jsonb(v_task) END), v_changes);
END $$;

-- Resolve (close the live task of source + dedupe key), dedupe (bump it), or create and announce.
CREATE FUNCTION relay_create_or_dedupe(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_in json := p_op->'input';
  v_source text := p_op->>'source';
  v_key text := v_in->>'dedupeKey';
  v_live tasks;
  v_found boolean := false;
  v_t tasks;
  v_m messages;
  v_changes jsonb;
BEGIN
  IF coalesce(v_key, '') <> '' THEN
    SELECT * INTO v_live FROM tasks WHERE source = v_source AND dedupe_key = v_key AND NOT relay_is_terminal(status);
    v_found := FOUND;
  END IF;
  IF p_op->>'action' = 'resolve' THEN
    IF NOT v_found THEN RETURN relay_refuse('{"refused": "noLiveTask"}'); END IF;
    UPDATE tasks SET status = 'done', progress = 100, updated_at = v_at, closed_at = v_at WHERE id = v_live.id RETURNING * INTO v_t;
    v_changes := relay_task_event(v_at, v_t, 'task.closed', v_live.claimed_by,
      relay_obj('status', '"done"', 'resolvedBy', relay_j(p_op->>'from'), 'note', '"resolved by source"'), '[]', p_signed);
    RETURN relay_ok(jsonb_build_object('task', to_jsonb(v_t), 'created', false), v_changes);
  END IF;
  IF v_found THEN
    UPDATE tasks SET occurrences = occurrences + 1, updated_at = v_at WHERE id = v_live.id RETURNING * INTO v_t;
    v_changes := relay_task_event(v_at, v_t, 'task.deduped', NULL, relay_obj('occurrences', relay_j(v_t.occurrences), 'from', relay_j(p_op->>'from')), '[]', p_signed);
    RETURN relay_ok(jsonb_build_object('task', to_jsonb(v_t), 'created', false), v_changes);
  END IF;
  IF p_op->'announce'->'unroutable' IS NOT NULL THEN
    RETURN relay_refuse(jsonb_build_object('refused', 'unroutable', 'message', p_op->'announce'->>'unroutable'));
  END IF;
  v_t := relay_insert_task(v_at, v_in, v_source);
  v_changes := relay_task_event(v_at, v_t, 'task.created', NULL, relay_obj('source', relay_j(v_t.source), 'target', relay_j(v_t.target)), '[]', p_signed);
  v_m := relay_announce(v_at, v_t, p_op->'announce');
  v_changes := v_changes || jsonb_build_array(relay_message_change(v_m));
  UPDATE tasks SET message_id = v_m.id WHERE id = v_t.id RETURNING * INTO v_t;
  RETURN relay_ok(jsonb_build_object('task', to_jsonb(v_t), 'created', true), v_changes);
END $$;

-- With a receipt, a webhook delivery id already recorded is a duplicate; only a delivery that was
-- applied is recorded (a refused one, a resolve before its trigger, may be retried).
CREATE FUNCTION relay_op_task_create(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_receipt json := p_op->'receipt';
  v_has_receipt boolean := json_typeof(p_op->'receipt') = 'object';
  v_seen bigint;
  v_out jsonb;
BEGIN
  IF v_has_receipt THEN
    SELECT task_id INTO v_seen FROM webhook_receipts WHERE integration = v_receipt->>'integration' AND delivery_id = v_receipt->>'deliveryId';
    IF FOUND THEN RETURN relay_refuse(jsonb_build_object('refused', 'duplicate', 'taskId', v_seen)); END IF;
  END IF;
  v_out := relay_create_or_dedupe(p_op, p_signed);
  IF (v_out->>'ok')::boolean AND v_has_receipt THEN
    INSERT INTO webhook_receipts (integration, delivery_id, received_at, task_id)
    VALUES (v_receipt->>'integration', v_receipt->>'deliveryId', (p_op->>'at')::bigint, (v_out->'value'->'task'->>'id')::bigint)
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN v_out;
END $$;

-- The claim is one conditional write: of concurrent claimers exactly one changes the row.
CREATE FUNCTION relay_op_claim(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_agent text := p_op->>'agentId';
  v_t tasks;
BEGIN
  UPDATE tasks SET status = 'claimed', claimed_by = v_agent, claimed_at = v_at, attempts = attempts + 1, updated_at = v_at
    WHERE id = (p_op->>'taskId')::bigint AND status = 'open' AND claimed_by IS NULL
    RETURNING * INTO v_t;
  IF NOT FOUND THEN
    SELECT * INTO v_t FROM tasks WHERE id = (p_op->>'taskId')::bigint;
    IF FOUND THEN RETURN relay_refuse(jsonb_build_object('refused', 'notOpen', 'task', to_jsonb(v_t))); END IF;
    RETURN relay_refuse('{"refused": "notFound"}');
  END IF;
  RETURN relay_ok(jsonb_build_object('task', to_jsonb(v_t)),
    relay_task_event(v_at, v_t, 'task.claimed', v_agent, relay_obj('attempt', relay_j(v_t.attempts)), '[]', p_signed));
END $$;

CREATE FUNCTION relay_op_transition(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_id bigint := (p_op->>'taskId')::bigint;
  v_refused text := relay_guard(v_id, p_op->'guard');
  v_status text := p_op->>'status';
  v_t tasks;
BEGIN
  IF v_refused IS NOT NULL THEN RETURN relay_refuse(jsonb_build_object('refused', v_refused)); END IF;
  UPDATE tasks SET status = v_status, progress = (p_op->>'progress')::int, updated_at = v_at,
      closed_at = CASE WHEN relay_is_terminal(v_status) THEN v_at ELSE closed_at END
    WHERE id = v_id RETURNING * INTO v_t;
  RETURN relay_ok(jsonb_build_object('task', to_jsonb(v_t)),
    relay_task_event(v_at, v_t, p_op->'event'->>'kind', p_op->'event'->>'agentId', coalesce(p_op->'event'->'data', 'null')::text, '[]', p_signed));
END $$;

CREATE FUNCTION relay_op_release(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint := (p_op->'release'->>'taskId')::bigint;
  v_refused text := relay_guard(v_id, p_op->'guard');
  v_t tasks;
  v_r jsonb;
BEGIN
  IF v_refused IS NOT NULL THEN RETURN relay_refuse(jsonb_build_object('refused', v_refused)); END IF;
  SELECT * INTO v_t FROM tasks WHERE id = v_id;
  v_r := relay_release((p_op->>'at')::bigint, v_t, p_op->'release', p_signed);
  RETURN relay_ok(jsonb_build_object('task', v_r->'task'), v_r->'changes');
END $$;

-- ---- agents -----------------------------------------------------------------------------------

CREATE FUNCTION relay_agent_events(p_at bigint, p_id text, p_events json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  e json;
  v_changes jsonb := '[]';
BEGIN
  FOR e IN SELECT * FROM json_array_elements(p_events) LOOP
    v_changes := v_changes || jsonb_build_array(jsonb_build_object('kind', 'event', 'event',
      to_jsonb(relay_append_event(p_at, e->>'kind', NULL, coalesce(e->>'agentId', p_id), coalesce(e->'data', 'null')::text))));
  END LOOP;
  RETURN v_changes;
END $$;

-- The fields a patch names (a key present, null included), the rest kept; last-seen only moves
-- forward (a touch committed meanwhile is newer than the plan's snapshot).
CREATE FUNCTION relay_patch_agent(p_id text, p json) RETURNS agents LANGUAGE plpgsql AS $$
DECLARE
  v_a agents;
BEGIN
  UPDATE agents SET
    label = CASE WHEN p->'label' IS NOT NULL THEN p->>'label' ELSE label END,
    tags = CASE WHEN p->'tags' IS NOT NULL THEN (p->'tags')::text ELSE tags END,
    capabilities = CASE WHEN p->'capabilities' IS NOT NULL THEN (p->'capabilities')::text ELSE capabilities END,
    channels = CASE WHEN p->'channels' IS NOT NULL THEN (p->'channels')::text ELSE channels END,
    client = CASE WHEN p->'client' IS NOT NULL THEN p->>'client' ELSE client END,
    host = CASE WHEN p->'host' IS NOT NULL THEN p->>'host' ELSE host END,
    cwd = CASE WHEN p->'cwd' IS NOT NULL THEN p->>'cwd' ELSE cwd END,
    rig = CASE WHEN p->'rig' IS NOT NULL THEN p->>'rig' ELSE rig END,
    status = CASE WHEN p->'status' IS NOT NULL THEN p->>'status' ELSE status END,
    ready = CASE WHEN p->'ready' IS NOT NULL THEN (p->>'ready')::boolean ELSE ready END,
    system = CASE WHEN p->'system' IS NOT NULL THEN (p->>'system')::boolean ELSE system END,
    token_hash = CASE WHEN p->'tokenHash' IS NOT NULL THEN p->>'tokenHash' ELSE token_hash END,
    offline_at = CASE WHEN p->'offlineAt' IS NOT NULL THEN (p->>'offlineAt')::bigint ELSE offline_at END,
    last_seen_at = CASE WHEN p->'lastSeenAt' IS NOT NULL THEN greatest(last_seen_at, (p->>'lastSeenAt')::bigint) ELSE last_seen_at END,
    meta = CASE WHEN p->'meta' IS NOT NULL THEN (p->'meta')::text ELSE meta END
  WHERE id = p_id RETURNING * INTO v_a;
  RETURN v_a;
END $$;

CREATE FUNCTION relay_op_agent_insert(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  a json := p_op->'agent';
  v_count int;
  v_newest bigint;
  v_a agents;
BEGIN
  IF EXISTS (SELECT 1 FROM agents WHERE id = a->>'id') THEN RETURN relay_refuse('{"refused": "changed"}'); END IF;
  SELECT count(*) INTO v_count FROM agents;
  IF v_count >= (p_op->>'maxAgents')::int THEN RETURN relay_refuse(jsonb_build_object('refused', 'full', 'count', v_count)); END IF;
  v_newest := relay_max_message();
  INSERT INTO agents (id, label, tags, capabilities, channels, client, host, cwd, rig, status, ready, system, token_hash, registered_at, last_seen_at, offline_at, meta, inbox_floor)
  VALUES (a->>'id', a->>'label', (a->'tags')::text, (a->'capabilities')::text, (a->'channels')::text, a->>'client', a->>'host', a->>'cwd', a->>'rig',
          a->>'status', (a->>'ready')::boolean, (a->>'system')::boolean, a->>'tokenHash', (a->>'registeredAt')::bigint, (a->>'lastSeenAt')::bigint,
          (a->>'offlineAt')::bigint, coalesce(a->'meta', 'null')::text, v_newest)
  RETURNING * INTO v_a;
  RETURN relay_ok(jsonb_build_object('agent', to_jsonb(v_a), 'newestMessageId', v_newest),
    jsonb_build_array(jsonb_build_object('kind', 'agent', 'agent', to_jsonb(v_a))) || relay_agent_events(v_at, v_a.id, p_op->'events'));
END $$;

CREATE FUNCTION relay_op_agent_patch(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_id text := p_op->>'id';
  v_old agents;
  v_a agents;
BEGIN
  SELECT * INTO v_old FROM agents WHERE id = v_id;
  IF NOT FOUND THEN RETURN relay_refuse('{"refused": "notFound"}'); END IF;
  IF v_old.token_hash <> p_op->'expect'->>'tokenHash' OR v_old.status <> p_op->'expect'->>'status' THEN RETURN relay_refuse('{"refused": "changed"}'); END IF;
  v_a := relay_patch_agent(v_id, p_op->'patch');
  RETURN relay_ok(jsonb_build_object('agent', to_jsonb(v_a), 'newestMessageId', relay_max_message()),
    jsonb_build_array(jsonb_build_object('kind', 'agent', 'agent', to_jsonb(v_a))) || relay_agent_events((p_op->>'at')::bigint, v_id, p_op->'events'));
END $$;

-- Offline, releasing exactly the claims it was planned with (same attempts), and its leases.
CREATE FUNCTION relay_op_agent_offline(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_id text := p_op->>'id';
  v_old agents;
  v_a agents;
  t tasks;
  l leases;
  v_planned json;
  v_claimed int;
  v_distinct int;
  v_changes jsonb;
  v_r jsonb;
BEGIN
  SELECT * INTO v_old FROM agents WHERE id = v_id;
  IF NOT FOUND THEN RETURN relay_refuse('{"refused": "notFound"}'); END IF;
  IF v_old.status = 'offline' THEN RETURN relay_refuse('{"refused": "changed"}'); END IF;
  SELECT count(*) INTO v_claimed FROM tasks WHERE claimed_by = v_id AND NOT relay_is_terminal(status);
  SELECT count(DISTINCT r->>'taskId') INTO v_distinct FROM json_array_elements(p_op->'releases') AS r;
  IF v_claimed <> v_distinct THEN RETURN relay_refuse('{"refused": "changed"}'); END IF;
  FOR t IN SELECT * FROM tasks WHERE claimed_by = v_id AND NOT relay_is_terminal(status) ORDER BY id LOOP
    -- The last plan for the task (as a Map built from the list keeps the last).
    SELECT r INTO v_planned FROM json_array_elements(p_op->'releases') WITH ORDINALITY AS x(r, n) WHERE (r->>'taskId')::bigint = t.id ORDER BY n DESC LIMIT 1;
    IF v_planned IS NULL OR (v_planned->>'attempts')::int <> t.attempts THEN RETURN relay_refuse('{"refused": "changed"}'); END IF;
  END LOOP;
  PERFORM relay_patch_agent(v_id, p_op->'patch');
  UPDATE agents SET status = 'offline', offline_at = v_at WHERE id = v_id RETURNING * INTO v_a;
  v_changes := jsonb_build_array(jsonb_build_object('kind', 'agent', 'agent', to_jsonb(v_a)))
    || jsonb_build_array(jsonb_build_object('kind', 'event', 'event', to_jsonb(relay_append_event(v_at, 'agent.offline', NULL, v_id, relay_obj('reason', relay_j(p_op->>'reason'))))));
  FOR t IN SELECT * FROM tasks WHERE claimed_by = v_id AND NOT relay_is_terminal(status) ORDER BY id LOOP
    SELECT r INTO v_planned FROM json_array_elements(p_op->'releases') WITH ORDINALITY AS x(r, n) WHERE (r->>'taskId')::bigint = t.id ORDER BY n DESC LIMIT 1;
    v_r := relay_release(v_at, t, v_planned, p_signed);
    v_changes := v_changes || (v_r->'changes');
  END LOOP;
  -- Its leases end in the same op (`expired` where the TTL had passed).
  FOR l IN SELECT * FROM leases WHERE released_at IS NULL AND agent_id = v_id ORDER BY id LOOP
    v_changes := v_changes || jsonb_build_array(relay_end_lease(v_at, l, CASE WHEN l.expires_at <= v_at THEN 'expired' ELSE 'offline' END));
  END LOOP;
  RETURN relay_ok(jsonb_build_object('agent', to_jsonb(v_a)), v_changes);
END $$;

-- ---- retention --------------------------------------------------------------------------------

CREATE FUNCTION relay_op_prune(p_op json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_cutoff bigint := (p_op->>'cutoff')::bigint;
  v_before bigint := relay_counter('pruned_through');
  v_max bigint;
  v_through bigint;
  v_events int;
  v_tasks int;
  v_callbacks int;
  v_receipts int;
  v_leases int;
  v_agents text[];
BEGIN
  WITH d AS (DELETE FROM messages WHERE created_at < v_cutoff RETURNING id) SELECT coalesce(max(id), 0) INTO v_max FROM d;
  v_through := greatest(v_before, v_max);
  IF v_through > v_before THEN PERFORM set_config('relay.pruned_through', v_through::text, true); END IF;
  IF v_max > 0 THEN
    DELETE FROM delivery_marks WHERE message_id <= v_max;
    DELETE FROM delivery_spans WHERE last_id <= v_max;
  END IF;
  DELETE FROM events WHERE at < v_cutoff;
  GET DIAGNOSTICS v_events = ROW_COUNT;
  DELETE FROM tasks WHERE relay_is_terminal(status) AND closed_at < v_cutoff;
  GET DIAGNOSTICS v_tasks = ROW_COUNT;
  -- Finished callback deliveries and webhook receipts age out with the rest; pending ones stay.
  DELETE FROM outbox WHERE state <> 'pending' AND updated_at < v_cutoff;
  GET DIAGNOSTICS v_callbacks = ROW_COUNT;
  DELETE FROM webhook_receipts WHERE received_at < v_cutoff;
  GET DIAGNOSTICS v_receipts = ROW_COUNT;
  DELETE FROM leases WHERE released_at IS NOT NULL AND released_at < v_cutoff;
  GET DIAGNOSTICS v_leases = ROW_COUNT;
  WITH d AS (DELETE FROM agents WHERE status = 'offline' AND NOT system AND offline_at < (p_op->>'offlineCutoff')::bigint RETURNING id)
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO v_agents FROM d;
  RETURN relay_ok(
    jsonb_build_object('messages', CASE WHEN v_max > 0 THEN v_max - v_before ELSE 0 END, 'prunedThrough', v_through, 'events', v_events, 'tasks', v_tasks,
                       'callbacks', v_callbacks, 'receipts', v_receipts, 'leases', v_leases, 'agents', to_jsonb(v_agents)),
    coalesce((SELECT jsonb_agg(jsonb_build_object('kind', 'agentRemoved', 'id', x) ORDER BY n) FROM unnest(v_agents) WITH ORDINALITY AS u(x, n)), '[]'));
END $$;

-- ---- the batch --------------------------------------------------------------------------------

CREATE FUNCTION relay_apply_op(p_op json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_at bigint := (p_op->>'at')::bigint;
  v_agent text := p_op->>'agentId';
  v_id bigint;
  v_marked int := 0;
  v_state text;
  v_at2 bigint;
  v_exp jsonb;
BEGIN
  CASE p_op->>'op'
    WHEN 'message.send' THEN RETURN relay_op_send(p_op, p_signed);
    WHEN 'task.create' THEN RETURN relay_op_task_create(p_op, p_signed);
    WHEN 'task.claim' THEN RETURN relay_op_claim(p_op, p_signed);
    WHEN 'task.transition' THEN RETURN relay_op_transition(p_op, p_signed);
    WHEN 'task.release' THEN RETURN relay_op_release(p_op, p_signed);
    WHEN 'agent.insert' THEN RETURN relay_op_agent_insert(p_op);
    WHEN 'agent.patch' THEN RETURN relay_op_agent_patch(p_op);
    WHEN 'agent.offline' THEN RETURN relay_op_agent_offline(p_op, p_signed);
    WHEN 'agent.touch' THEN
      UPDATE agents SET last_seen_at = v_at WHERE id IN (SELECT json_array_elements_text(p_op->'ids'));
      RETURN relay_ok('null', '[]');
    WHEN 'delivery.read' THEN
      IF json_typeof(p_op->'ids') = 'array' THEN v_marked := v_marked + relay_mark_read(v_agent, p_op->'ids', v_at); END IF;
      IF (p_op->>'upTo') IS NOT NULL THEN v_marked := v_marked + relay_mark_read_up_to(v_agent, (p_op->>'upTo')::bigint, v_at); END IF;
      RETURN relay_ok(jsonb_build_object('marked', v_marked), '[]');
    WHEN 'delivery.ack' THEN
      v_id := (p_op->>'messageId')::bigint;
      IF NOT EXISTS (SELECT 1 FROM relay_delivery(v_agent, v_id)) THEN RETURN relay_refuse('{"refused": "notDelivered"}'); END IF;
      PERFORM relay_advance(v_agent, v_id, p_op->>'state', v_at);
      SELECT d.state, d.at INTO v_state, v_at2 FROM relay_delivery(v_agent, v_id) d;
      RETURN relay_ok(jsonb_build_object('delivery', jsonb_build_object('messageId', v_id, 'agentId', v_agent, 'state', v_state, 'at', v_at2)), '[]');
    WHEN 'delivery.mark' THEN
      PERFORM relay_advance(v_agent, x::bigint, p_op->>'state', v_at) FROM json_array_elements_text(p_op->'messageIds') AS x;
      RETURN relay_ok('null', '[]');
    WHEN 'delivery.span' THEN
      IF (p_op->>'rowId') IS NULL THEN
        RETURN relay_ok(jsonb_build_object('rowId', relay_insert_span(v_agent, 'pushed', (p_op->>'first')::bigint, (p_op->>'last')::bigint, v_at)), '[]');
      END IF;
      -- Keyed by more than the row id: a span whose insert was rolled back with its batch must not
      -- move another span that later took the same id.
      UPDATE delivery_spans SET last_id = (p_op->>'last')::bigint
        WHERE id = (p_op->>'rowId')::bigint AND agent_id = v_agent AND first_id = (p_op->>'first')::bigint AND last_id < (p_op->>'last')::bigint;
      RETURN relay_ok(jsonb_build_object('rowId', (p_op->>'rowId')::bigint), '[]');
    WHEN 'callback.attempt' THEN
      UPDATE outbox SET state = p_op->>'state', attempts = attempts + 1, next_at = (p_op->>'nextAt')::bigint, last_status = (p_op->>'status')::int,
          last_error = p_op->>'error', updated_at = v_at
        WHERE id = (p_op->>'id')::bigint;
      RETURN relay_ok('null', '[]');
    WHEN 'lease.acquire' THEN RETURN relay_op_lease_acquire(p_op);
    WHEN 'lease.renew', 'lease.release' THEN RETURN relay_op_lease_hold(p_op);
    WHEN 'lease.expire' THEN
      v_exp := relay_expire_leases(v_at);
      RETURN relay_ok(jsonb_build_object('leases', v_exp->'leases'), v_exp->'changes');
    WHEN 'prune' THEN RETURN relay_op_prune(p_op);
  END CASE;
END $$;

-- The ops in order under the head lock; the outcomes as a jsonb array. The head's counters are
-- written back at the end (relay_take advances them meanwhile).
CREATE FUNCTION relay_apply_ops(p_ops json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
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
    v_out := array_append(v_out, relay_apply_op(v_op, p_signed));
  END LOOP;
  UPDATE relay_head SET last_message = relay_counter('message'), last_event = relay_counter('event'), last_task = relay_counter('task'),
      last_lease = relay_counter('lease'), lease_token = relay_counter('lease_token'), pruned_through = relay_counter('pruned_through');
  RETURN to_jsonb(v_out);
END $$;

-- One node's batch in one call: {"id": batch id, "signed": [sources whose callbacks an
-- integration's secret signs], "ops": [...]}. Recorded under its id with its outcomes, in the same
-- transaction (see relay_batches).
CREATE FUNCTION relay_apply(p_batch json) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_out jsonb := relay_apply_ops(p_batch->'ops', relay_json_texts(p_batch->'signed'));
BEGIN
  INSERT INTO relay_batches (id, outcomes) VALUES (p_batch->>'id', v_out);
  -- Now and then, forget batches no lost reply can ask about any more.
  IF random() < 0.01 THEN DELETE FROM relay_batches WHERE created_at < now() - interval '15 minutes'; END IF;
  RETURN v_out;
END $$;
