-- The indexes of the newest documents are the service's: an earlier one would never move them on.
DO $$
DECLARE
    name text;
BEGIN
    FOR name IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE i.indrelid = 'signal_search'::regclass
                  AND starts_with(c.relname::text, 'signal_search_recent_')
    LOOP
        EXECUTE format('DROP INDEX %I', name);
    END LOOP;
END
$$;
COMMENT ON FUNCTION signal_search_estimate(tsquery) IS NULL;
