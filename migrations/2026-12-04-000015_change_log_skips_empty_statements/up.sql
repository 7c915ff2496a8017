-- The change log's trigger returns at once for a statement that changed no row.
CREATE OR REPLACE FUNCTION signals_log_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    logged bigint;
BEGIN
    -- A statement that changed no row logs nothing and takes no lock: an INSERT ... ON CONFLICT
    -- DO NOTHING that inserted nothing (a create trying the next derived slug) held the lock
    -- to its commit, and two such creates could each wait for the other (a deadlock, 503).
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT FROM old_rows) THEN
            RETURN NULL;
        END IF;
    ELSIF NOT EXISTS (SELECT FROM new_rows) THEN
        RETURN NULL;
    END IF;
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
