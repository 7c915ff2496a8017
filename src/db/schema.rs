// Hand-written to match migrations/.

diesel::table! {
    /// The full-text documents, kept by a trigger on `signals`. Their `search` tsvector is only
    /// ever used through SQL fragments (`db::lists`), so it is not declared here.
    signal_search (id) {
        id -> Uuid,
        published_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        name -> Text,
        scope -> Text,
        prefix -> Text,
        secret_hash -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    server_secrets (name) {
        name -> Text,
        value -> Bytea,
    }
}

diesel::table! {
    signals (id) {
        id -> Uuid,
        slug -> Text,
        title -> Text,
        summary -> Text,
        body -> Text,
        score -> SmallInt,
        category -> Text,
        /// `category` lower-cased by the service: what category filters compare.
        category_key -> Text,
        published_at -> Timestamptz,
        sections -> Jsonb,
        tags -> Array<Text>,
        /// `tags` lower-cased by the service: what tag filters compare.
        tag_keys -> Array<Text>,
        source_url -> Nullable<Text>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_records (key_id, idempotency_key) {
        key_id -> Uuid,
        idempotency_key -> Text,
        fingerprint -> Bytea,
        status -> SmallInt,
        body -> Bytea,
        location -> Nullable<Text>,
        etag -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(signals -> api_keys (created_by));
diesel::joinable!(idempotency_records -> api_keys (key_id));
diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    idempotency_records,
    server_secrets,
    signals
);

diesel::table! {
    rate_limit_counts (policy, subject, window_start) {
        policy -> Text,
        subject -> Text,
        window_start -> BigInt,
        count -> BigInt,
    }
}
