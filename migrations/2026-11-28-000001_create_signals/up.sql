-- API keys: only a SHA-256 hash of the secret is stored. `prefix` is the public,
-- random lookup part of a key; the secret part is compared in constant time.
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    scope        text        NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    prefix       text        NOT NULL UNIQUE,
    secret_hash  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Server-wide secrets that must survive restarts and be shared by every
-- instance on one database (the key that signs pagination cursors).
CREATE TABLE server_secrets (
    name  text  PRIMARY KEY,
    value bytea NOT NULL
);
INSERT INTO server_secrets (name, value)
VALUES ('cursor_hmac', decode(md5(gen_random_uuid()::text) || md5(gen_random_uuid()::text), 'hex'));

CREATE TABLE signals (
    id           uuid        PRIMARY KEY,
    slug         text        NOT NULL,
    title        text        NOT NULL,
    summary      text        NOT NULL DEFAULT '',
    body         text        NOT NULL DEFAULT '',
    score        smallint    NOT NULL CHECK (score BETWEEN 0 AND 10),
    category     text        NOT NULL,
    published_at timestamptz NOT NULL,
    sections     jsonb       NOT NULL DEFAULT '[]',
    tags         text[]      NOT NULL DEFAULT '{}',
    -- lower-cased tags, kept by the trigger below: case-insensitive tag filters use its GIN index
    tag_keys     text[]      NOT NULL DEFAULT '{}',
    source_url   text,
    created_by   uuid        REFERENCES api_keys (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- full-text document, kept by the trigger below: title and tags weigh A, summary B, the rest C
    search       tsvector    NOT NULL DEFAULT ''::tsvector,
    CONSTRAINT signals_slug_key UNIQUE (slug)
);

CREATE FUNCTION signals_derive_columns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tag_keys := ARRAY(SELECT lower(t) FROM unnest(NEW.tags) AS t);
    NEW.search :=
        setweight(to_tsvector('english'::regconfig, NEW.title), 'A') ||
        setweight(to_tsvector('english'::regconfig, array_to_string(NEW.tags, ' ')), 'A') ||
        setweight(to_tsvector('english'::regconfig, NEW.summary), 'B') ||
        setweight(to_tsvector('english'::regconfig,
            coalesce((SELECT string_agg(s ->> 'heading', ' ') FROM jsonb_array_elements(NEW.sections) AS s), '')), 'B') ||
        setweight(to_tsvector('english'::regconfig, NEW.body), 'C') ||
        setweight(to_tsvector('english'::regconfig,
            coalesce((SELECT string_agg(s ->> 'body', ' ') FROM jsonb_array_elements(NEW.sections) AS s), '')), 'C');
    RETURN NEW;
END
$$;

CREATE TRIGGER signals_derive_columns
    BEFORE INSERT OR UPDATE OF title, summary, body, sections, tags ON signals
    FOR EACH ROW EXECUTE FUNCTION signals_derive_columns();

-- Keyset orders: newest first (and oldest first, scanned backwards), by score.
CREATE INDEX signals_published_idx ON signals (published_at, id);
CREATE INDEX signals_score_published_idx ON signals (score, published_at, id);
-- Category filters match case-insensitively.
CREATE INDEX signals_category_published_idx ON signals (lower(category), published_at, id);
CREATE INDEX signals_tag_keys_idx ON signals USING gin (tag_keys);
CREATE INDEX signals_search_idx ON signals USING gin (search);
CREATE INDEX signals_created_by_idx ON signals (created_by);
