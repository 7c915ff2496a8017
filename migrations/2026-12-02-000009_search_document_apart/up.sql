-- The full-text document moves out of `signals` into a table of its own. In `signals` it made
-- every row about 1,700 bytes wider, past PostgreSQL's 2 KB threshold, so the sections of
-- every row were compressed (most of them moved out to TOAST), and every list page and every
-- lookup paid for reading and decompressing them; a plain table of the same client fields
-- has none of that. Only searches read the document now.
CREATE TABLE signal_search (
    id     uuid     PRIMARY KEY REFERENCES signals (id) ON DELETE CASCADE,
    search tsvector NOT NULL
);

CREATE FUNCTION signal_search_document(s signals) RETURNS tsvector LANGUAGE sql STABLE AS $$
    SELECT setweight(to_tsvector('english'::regconfig, s.title), 'A') ||
           setweight(to_tsvector('english'::regconfig, array_to_string(s.tags, ' ')), 'A') ||
           setweight(to_tsvector('english'::regconfig, s.summary), 'B') ||
           setweight(to_tsvector('english'::regconfig,
               coalesce((SELECT string_agg(x ->> 'heading', ' ') FROM jsonb_array_elements(s.sections) AS x), '')), 'B') ||
           setweight(to_tsvector('english'::regconfig, s.body), 'C') ||
           setweight(to_tsvector('english'::regconfig,
               coalesce((SELECT string_agg(x ->> 'body', ' ') FROM jsonb_array_elements(s.sections) AS x), '')), 'C')
$$;

INSERT INTO signal_search (id, search) SELECT id, search FROM signals;
CREATE INDEX signal_search_idx ON signal_search USING gin (search);
-- Statistics at once: without them the planner takes every word for a rare one, and a search
-- that matches half of the signals is planned as one that matches a few.
ANALYZE signal_search;

DROP TRIGGER signals_derive_columns ON signals;
DROP FUNCTION signals_derive_columns();
ALTER TABLE signals DROP COLUMN search;

-- Kept once per statement: a batch's documents are made with one INSERT ... SELECT.
CREATE FUNCTION signals_index_text() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER signals_index_inserts AFTER INSERT ON signals
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signals_index_text();
CREATE TRIGGER signals_index_updates AFTER UPDATE ON signals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signals_index_text();
