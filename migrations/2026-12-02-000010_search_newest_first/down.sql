CREATE OR REPLACE FUNCTION signals_index_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO signal_search (id, search)
        SELECT n.id, signal_search_document(n) FROM new_rows n;
    ELSE
        INSERT INTO signal_search (id, search)
        SELECT n.id, signal_search_document(n)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (n.title, n.summary, n.body, n.sections, n.tags)
              IS DISTINCT FROM (o.title, o.summary, o.body, o.sections, o.tags)
        ON CONFLICT (id) DO UPDATE SET search = EXCLUDED.search;
    END IF;
    RETURN NULL;
END
$$;

DROP INDEX signal_search_published_idx;
ALTER TABLE signal_search DROP COLUMN published_at;
