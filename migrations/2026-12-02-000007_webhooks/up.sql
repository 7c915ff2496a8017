-- Webhook subscriptions and their deliveries, made from the change log.
--
-- A fan-out step (one instance at a time: it locks `webhook_fanout`) reads the log after the
-- position it reached and, in one transaction, writes one message per change that some
-- subscription wants (the body every delivery of it sends) and one delivery per subscription
-- that wants it, then moves the position on. Positions commit in order, so nothing is skipped;
-- (webhook_id, position) is unique, so nothing is made twice.
--
-- Senders in every instance claim due deliveries with FOR UPDATE SKIP LOCKED and a lease:
-- a claimed delivery is not claimed again until its lease ends, so two instances never send
-- the same attempt at once, and a killed instance's deliveries are retried once it ends.
CREATE TABLE webhooks (
    id              uuid        PRIMARY KEY,
    url             text        NOT NULL,
    min_score       smallint,
    categories      text[]      NOT NULL DEFAULT '{}',
    tags            text[]      NOT NULL DEFAULT '{}',
    events          text[]      NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    -- Why it was disabled by the service (a receiver's 410); null when enabled by a client.
    disabled_reason text,
    -- The signing key, sealed with the service's webhook key (not in the database).
    secret          bytea       NOT NULL,
    -- The key before the last rotation: it signs too until previous_until.
    previous_secret bytea,
    previous_until  timestamptz,
    -- Changes after this position of the log are delivered (the newest one at creation).
    after_position  bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE webhook_fanout (
    id       smallint PRIMARY KEY CHECK (id = 1),
    position bigint   NOT NULL
);
INSERT INTO webhook_fanout (id, position)
    VALUES (1, COALESCE((SELECT max(position) FROM signal_changes), 0));

-- One change as subscriptions receive it: {"type", "timestamp", "data"}, made once.
CREATE TABLE webhook_messages (
    position   bigint      PRIMARY KEY,
    event_type text        NOT NULL,
    payload    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    -- `webhook-id` is msg_ and this id without hyphens: the same for every retry.
    id              uuid        PRIMARY KEY,
    webhook_id      uuid        NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    position        bigint      NOT NULL REFERENCES webhook_messages,
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, position)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_position ON webhook_deliveries (position);

CREATE TABLE webhook_attempts (
    -- UUIDv7: newest first is id descending.
    id              uuid        PRIMARY KEY,
    delivery_id     uuid        NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    webhook_id      uuid        NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    attempt         integer     NOT NULL,
    attempted_at    timestamptz NOT NULL,
    -- The receiver's HTTP status; null when none came.
    status          smallint,
    latency_ms      integer     NOT NULL,
    -- What went wrong, as a class (timeout, connect, address, tls, status, ...); null on success.
    error           text,
    next_attempt_at timestamptz
);
CREATE INDEX webhook_attempts_newest ON webhook_attempts (webhook_id, id DESC);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);
