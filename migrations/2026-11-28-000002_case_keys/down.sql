CREATE OR REPLACE FUNCTION signals_derive_columns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tag_keys := ARRAY(SELECT lower(t) FROM unnest(NEW.tags) AS t);
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
DROP INDEX signals_category_published_idx;
CREATE INDEX signals_category_published_idx ON signals (lower(category), published_at, id);
ALTER TABLE signals DROP COLUMN category_key;
