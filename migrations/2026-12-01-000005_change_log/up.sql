-- The change log: one row for every create, update and delete of a signal, written by a trigger
-- in the same transaction as the change (single writes, batches, PATCH, import alike). NOTIFY is
-- only a wake-up for listeners; this table is the truth they read.
--
-- Positions are handed out in commit order: the trigger takes a transaction-scoped advisory lock
-- before it draws a position, and holds it until its transaction ends. A sequence alone hands
-- out positions before commit, so a later position could commit first and a reader taking
-- "position > last" would skip the earlier one when it commits; under the lock, every position
-- below a committed one belongs to a transaction that has already ended.
CREATE TABLE signal_changes (
    position     bigint      PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
    signal_id    uuid        NOT NULL,
    slug         text        NOT NULL,
    -- What subscribers' filters need of the state before and after (null when there is none).
    before       jsonb,
    after        jsonb,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signal_changes_committed_idx ON signal_changes (committed_at);
CREATE SEQUENCE signal_changes_position AS bigint;

CREATE FUNCTION signal_filter_state(s signals) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('score', s.score, 'category_key', s.category_key,
                              'tag_keys', to_jsonb(s.tag_keys), 'published_at', s.published_at)
$$;

CREATE FUNCTION signals_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER signals_log_change
    AFTER INSERT OR UPDATE OR DELETE ON signals
    FOR EACH ROW EXECUTE FUNCTION signals_log_change();
