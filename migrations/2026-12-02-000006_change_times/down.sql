CREATE OR REPLACE FUNCTION signals_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pos bigint;
BEGIN
    -- One writer at a time from here to commit (see above); the key is the table's own.
    PERFORM pg_advisory_xact_lock('signal_changes'::regclass::oid::bigint);
    pos := nextval('signal_changes_position');
    IF TG_OP = 'INSERT' THEN
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after)
        VALUES (pos, 'created', NEW.id, NEW.slug, NULL, signal_filter_state(NEW));
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after)
        VALUES (pos, 'updated', NEW.id, NEW.slug, signal_filter_state(OLD), signal_filter_state(NEW));
    ELSE
        INSERT INTO signal_changes (position, kind, signal_id, slug, before, after)
        VALUES (pos, 'deleted', OLD.id, OLD.slug, signal_filter_state(OLD), NULL);
    END IF;
    PERFORM pg_notify('signal_changes', pos::text);
    RETURN NULL;
END
$$;
