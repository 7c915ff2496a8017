-- A change's time is taken when its position is, under the writers' lock (clock_timestamp(),
-- not the transaction's start): so times increase with positions, and the newest time in the
-- log is a Last-Modified that never goes back while anything changes (the feeds use it).
CREATE OR REPLACE FUNCTION signals_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pos bigint;
    at timestamptz;
BEGIN
    -- One writer at a time from here to commit (see the change log's migration).
    PERFORM pg_advisory_xact_lock('signal_changes'::regclass::oid::bigint);
    pos := nextval('signal_changes_position');
    at := clock_timestamp();
    IF TG_OP = 'INSERT' THEN
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after, committed_at)
        VALUES (pos, 'created', NEW.id, NEW.slug, NULL, signal_filter_state(NEW), at);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after, committed_at)
        VALUES (pos, 'updated', NEW.id, NEW.slug, signal_filter_state(OLD), signal_filter_state(NEW), at);
    ELSE
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after, committed_at)
        VALUES (pos, 'deleted', OLD.id, OLD.slug, signal_filter_state(OLD), NULL, at);
    END IF;
    PERFORM pg_notify('signal_changes', pos::text);
    RETURN NULL;
END
$$;
