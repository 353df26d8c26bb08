-- Which ops change routing is the domain's rule (broker/domain/routing.ts changesRouting), kept
-- beside the matcher it follows: the writer marks each such op `reroutes` (writer.ts wireOps),
-- and the database only reads the mark. 0006 decided it here from the op's fields. An op refused
-- changes nothing, so it never counts. Every node must run code that marks its ops: an older
-- node's agent changes would no longer move relay_head.agents_position.
CREATE OR REPLACE FUNCTION relay_reroutes(p_op json, p_out jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce((p_out->>'ok')::boolean, false) AND coalesce((p_op->>'reroutes')::boolean, false)
$$;
