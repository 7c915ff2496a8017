-- Case-insensitive matching keys are now written by the service (Rust's Unicode lowercasing), and
-- requests are lowercased the same way, so matching no longer depends on the database's locale
-- and the planner sees the actual filter values. Existing rows are backfilled with lower().
ALTER TABLE signals ADD COLUMN category_key text;
UPDATE signals SET category_key = lower(category);
ALTER TABLE signals ALTER COLUMN category_key SET NOT NULL;
DROP INDEX signals_category_published_idx;
CREATE INDEX signals_category_published_idx ON signals (category_key, published_at, id);

CREATE OR REPLACE FUNCTION signals_derive_columns() RETURNS trigger LANGUAGE plpgsql AS $$
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
