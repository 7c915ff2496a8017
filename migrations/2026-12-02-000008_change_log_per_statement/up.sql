-- The change log is written once per statement instead of once per row: a batch of 1,000
-- signals inserted with one statement takes the writers' lock once, and writes its 1,000
-- changes and one NOTIFY with one INSERT ... SELECT over the statement's transition table.
-- (A trigger with transition tables handles one kind of event, hence three.) Positions are
-- still drawn under the lock, and times after it (see change_times): nothing else changes
-- for readers of the log.
DROP TRIGGER signals_log_change ON signals;
DROP FUNCTION signals_log_change();

CREATE FUNCTION signals_log_changes() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER signals_log_inserts AFTER INSERT ON signals
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signals_log_changes();
CREATE TRIGGER signals_log_updates AFTER UPDATE ON signals
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signals_log_changes();
CREATE TRIGGER signals_log_deletes AFTER DELETE ON signals
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION signals_log_changes();
