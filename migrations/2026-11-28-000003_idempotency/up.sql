-- Responses of writes made with an Idempotency-Key, per API key, kept 24 hours: a retry with the
-- same body gets the stored response instead of writing again. A record commits in the same
-- transaction as the rows it answers for.
CREATE TABLE idempotency_records (
    key_id          uuid        NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    idempotency_key text        NOT NULL,
    fingerprint     bytea       NOT NULL,
    status          smallint    NOT NULL,
    body            bytea       NOT NULL,
    location        text,
    etag            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, idempotency_key)
);
CREATE INDEX idempotency_records_created_idx ON idempotency_records (created_at);
