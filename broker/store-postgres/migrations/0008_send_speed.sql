-- Plain sends at less cost per message (bench/RESULTS.md, issue 18, 2026-12-06: the store alone
-- from about 7,700 to about 10,000 sends/s). Two parts.
--
-- ---- 1. the search vector may come from the node ------------------------------------------------
-- The generated column computed to_tsvector inside the batch, under the head row lock: a fifth of
-- the database's time per send. Now the node that plans a plain send gives the vector when it can
-- compute exactly what this expression gives (broker/store-postgres/search-vector.ts; the store
-- checks on open that the database agrees), and a trigger computes it for every row that comes
-- without one (other sends, non-ASCII text, a migrate from SQLite). The column stays filled for
-- every row; it is nullable only because the trigger, not the INSERT, fills it.

CREATE FUNCTION relay_search_vector(p_subject text, p_body text) RETURNS tsvector IMMUTABLE PARALLEL SAFE LANGUAGE sql
  AS $$ SELECT setweight(to_tsvector('simple', relay_words(coalesce(p_subject, ''))), 'A') || setweight(to_tsvector('simple', relay_words(p_body)), 'B') $$;

ALTER TABLE messages ALTER COLUMN search DROP EXPRESSION;
ALTER TABLE messages ALTER COLUMN search DROP NOT NULL;

CREATE FUNCTION relay_fill_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.search := relay_search_vector(NEW.subject, NEW.body);
  RETURN NEW;
END $$;

CREATE TRIGGER messages_fill_search BEFORE INSERT ON messages
  FOR EACH ROW WHEN (NEW.search IS NULL) EXECUTE FUNCTION relay_fill_search();

-- ---- 2. runs of plain sends, grouped by the node ----------------------------------------------------
-- 0005 found runs of plain sends inside the batch, looking into every op with `->>`, which parses
-- the op's JSON text again each time (about 14 µs per op in the loop alone). Now the node sends a
-- run as one op, `message.run`, its sends as flat rows read in one pass (json_to_recordset), and
-- each answered as relay_op_send would: the same rows, ids and outcomes (the store contract and
-- test/postgres/same-as-sqlite check them). A plain send sent on its own still goes through
-- relay_op_send. A row routed from a copy of the agents older than agents_position is refused as
-- staleRoute, as in 0006; no agent op can come between the rows of one run, so the position is
-- the batch's. The message's row image is answered once, in its change (outcomes.ts reads the
-- value's message from there).
CREATE FUNCTION relay_send_rows(p_rows json, p_agents_position bigint) RETURNS jsonb[] LANGUAGE plpgsql AS $$
DECLARE
  v_base bigint := relay_counter('message');
  v_out jsonb[];
  v_sent bigint;
BEGIN
  WITH input AS (
    SELECT r.*, (r."routedAt" IS NOT NULL AND r."routedAt" < p_agents_position) AS stale
    FROM ROWS FROM (json_to_recordset(p_rows) AS ("from" text, "to" text, channel text, subject text, body text, claimable boolean,
           "createdAt" bigint, meta json, recipients text[], search tsvector, "routedAt" bigint)) WITH ORDINALITY
         AS r("from", "to", channel, subject, body, claimable, "createdAt", meta, recipients, search, "routedAt", n)
  ), numbered AS (
    SELECT input.*, v_base + count(*) FILTER (WHERE NOT stale) OVER (ORDER BY n) AS id FROM input
  ), ins AS (
    INSERT INTO messages (id, from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta, recipients, search)
    SELECT id, "from", "to", channel, subject, body, NULL, id, claimable, NULL, "createdAt", coalesce(meta::text, 'null'), recipients, search
    FROM numbered WHERE NOT stale
    RETURNING id, from_id, to_target, channel, subject, body, reply_to, thread_id, claimable, task_id, created_at, meta, recipients
  )
  SELECT array_agg(CASE WHEN nb.stale THEN relay_refuse(jsonb_build_object('refused', 'staleRoute', 'position', p_agents_position))
                        ELSE relay_ok(jsonb_build_object('task', NULL),
                               jsonb_build_array(jsonb_build_object('kind', 'message', 'message', to_jsonb(i) - 'recipients', 'recipients', to_jsonb(i.recipients)))) END
                   ORDER BY nb.n),
         count(i.id)
    INTO v_out, v_sent
    FROM numbered nb LEFT JOIN ins i ON i.id = nb.id AND NOT nb.stale;
  PERFORM set_config('relay.message', (v_base + v_sent)::text, true);
  RETURN coalesce(v_out, '{}');
END $$;

-- relay_apply_ops as in 0006, with message.run, and without 0005's search for runs of plain sends.
CREATE OR REPLACE FUNCTION relay_apply_ops(p_ops json, p_signed text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  h relay_head;
  v_op json;
  v_out jsonb[] := '{}';
  v_one jsonb;
BEGIN
  SELECT * INTO h FROM relay_head FOR UPDATE;
  PERFORM set_config('relay.message', h.last_message::text, true), set_config('relay.event', h.last_event::text, true),
          set_config('relay.task', h.last_task::text, true), set_config('relay.lease', h.last_lease::text, true),
          set_config('relay.lease_token', h.lease_token::text, true), set_config('relay.pruned_through', h.pruned_through::text, true);
  FOR v_op IN SELECT * FROM json_array_elements(p_ops) LOOP
    IF v_op->>'op' = 'message.run' THEN
      v_out := v_out || relay_send_rows(v_op->'rows', h.agents_position);
      CONTINUE;
    END IF;
    IF (v_op->>'routedAt') IS NOT NULL AND (v_op->>'routedAt')::bigint < h.agents_position THEN
      v_out := array_append(v_out, relay_refuse(jsonb_build_object('refused', 'staleRoute', 'position', h.agents_position)));
      CONTINUE;
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
  UPDATE relay_head SET last_message = relay_counter('message'), last_event = relay_counter('event'), last_task = relay_counter('task'),
      last_lease = relay_counter('lease'), lease_token = relay_counter('lease_token'), pruned_through = relay_counter('pruned_through'),
      agents_position = CASE WHEN current_setting('relay.agents_changed', true) = '1' THEN (SELECT coalesce(max(position), 0) + 1 FROM relay_log) ELSE agents_position END;
  RETURN to_jsonb(v_out);
END $$;

DROP FUNCTION relay_send_run(json[]);
DROP FUNCTION relay_is_plain_send(json);
