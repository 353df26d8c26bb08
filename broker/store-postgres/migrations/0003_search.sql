-- message/search (broker/store-postgres/search.ts): the query rule's terms as a tsquery, and the
-- snippet of a match. Words are runs of letters and digits (relay_words, as the index splits
-- text); a term of several words is a phrase, in order; a prefix term's last word matches the
-- start of a longer one; every term must match. A term with no word finds nothing (NULL).
CREATE FUNCTION relay_search_query(p_terms json) RETURNS tsquery LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  t json;
  v_words text[];
  v_parts text[] := '{}';
BEGIN
  FOR t IN SELECT * FROM json_array_elements(p_terms) LOOP
    v_words := array_remove(regexp_split_to_array(trim(relay_words(t->>'text')), ' '), '');
    IF coalesce(array_length(v_words, 1), 0) = 0 THEN RETURN NULL; END IF;
    -- Each word is letters and digits only, so quoting it needs no escape.
    v_parts := v_parts || ('(' || (
      SELECT string_agg('''' || w || '''' || CASE WHEN n = array_length(v_words, 1) AND (t->>'prefix')::boolean THEN ':*' ELSE '' END, ' <-> ' ORDER BY n)
      FROM unnest(v_words) WITH ORDINALITY AS u(w, n)) || ')');
  END LOOP;
  IF array_length(v_parts, 1) IS NULL THEN RETURN NULL; END IF;
  RETURN to_tsquery('simple', array_to_string(v_parts, ' & '));
END $$;

-- Text around the best match, matched words between « and », at most 16 words (SQLite's
-- snippet(…, 16)): from the subject when only the subject matches, else from the body. Whether
-- it was cut at either end is told by search.ts, which adds the … there.
CREATE FUNCTION relay_snippet(p_subject text, p_body text, q tsquery) RETURNS TABLE (snippet text, source text) LANGUAGE sql IMMUTABLE AS $$
  SELECT ts_headline('simple', x.source, q, 'StartSel=«, StopSel=», MaxWords=16, MinWords=4, ShortWord=0, MaxFragments=1'), x.source
  FROM (SELECT CASE
    WHEN to_tsvector('simple', relay_words(coalesce(p_subject, ''))) @@ q AND NOT to_tsvector('simple', relay_words(p_body)) @@ q THEN p_subject
    ELSE p_body END AS source) AS x
$$;
