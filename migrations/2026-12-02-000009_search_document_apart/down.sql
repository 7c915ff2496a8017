DROP TRIGGER signals_index_inserts ON signals;
DROP TRIGGER signals_index_updates ON signals;
DROP FUNCTION signals_index_text();

ALTER TABLE signals ADD COLUMN search tsvector NOT NULL DEFAULT ''::tsvector;
UPDATE signals s SET search = x.search FROM signal_search x WHERE x.id = s.id;
CREATE INDEX signals_search_idx ON signals USING gin (search);

CREATE FUNCTION signals_derive_columns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search :=
        setweight(to_tsvector('english'::regconfig, NEW.title), 'A') ||
        setweight(to_tsvector('english'::regconfig, array_to_string(NEW.tags, ' ')), 'A') ||
        setweight(to_tsvector('english'::regconfig, NEW.summary), 'B') ||
        setweight(to_tsvector('english'::regconfig,
            coalesce((SELECT string_agg(s ->> 'heading', ' ') FROM jsonb_array_elements(NEW.sections) AS s), '')), 'B') ||
        setweight(to_tsvector('english'::regconfig, NEW.body), 'C') ||
        setweight(to_tsvector('english'::regconfig,
            coalesce((SELECT string_agg(s ->> 'body', ' ') FROM jsonb_array_elements(NEW.sections) AS s), '')), 'C');
    RETURN NEW;
END
$$;
CREATE TRIGGER signals_derive_columns
    BEFORE INSERT OR UPDATE OF title, summary, body, sections, tags ON signals
    FOR EACH ROW EXECUTE FUNCTION signals_derive_columns();

DROP FUNCTION signal_search_document(signals);
DROP TABLE signal_search;
