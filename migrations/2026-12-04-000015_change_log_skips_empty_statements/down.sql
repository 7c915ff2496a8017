-- The trigger as migration 000008 made it.
CREATE OR REPLACE FUNCTION signals_log_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    logged bigint;
BEGIN
    -- One writer at a time from here to commit (see the change log's migration).
    PERFORM pg_advisory_xact_lock('signal_changes'::regclass::oid::bigint);
    IF TG_OP = 'INSERT' THEN
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after, committed_at)
        SELECT nextval('signal_changes_position'), 'created', n.id, n.slug, NULL,
               signal_filter_state(n), clock_timestamp()
        FROM new_rows n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after, committed_at)
        SELECT nextval('signal_changes_position'), 'updated', n.id, n.slug,
               signal_filter_state(o), signal_filter_state(n), clock_timestamp()
        FROM new_rows n JOIN old_rows o ON o.id = n.id;
    ELSE
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after, committed_at)
        SELECT nextval('signal_changes_position'), 'deleted', o.id, o.slug,
               signal_filter_state(o), NULL, clock_timestamp()
        FROM old_rows o;
    END IF;
    GET DIAGNOSTICS logged = ROW_COUNT;
    IF logged > 0 THEN
        PERFORM pg_notify('signal_changes', '');
    END IF;
    RETURN NULL;
END
$$;
