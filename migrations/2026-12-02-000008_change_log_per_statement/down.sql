DROP TRIGGER signals_log_inserts ON signals;
DROP TRIGGER signals_log_updates ON signals;
DROP TRIGGER signals_log_deletes ON signals;
DROP FUNCTION signals_log_changes();

CREATE FUNCTION signals_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER signals_log_change
    AFTER INSERT OR UPDATE OR DELETE ON signals
    FOR EACH ROW EXECUTE FUNCTION signals_log_change();
