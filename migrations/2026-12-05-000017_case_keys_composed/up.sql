-- Case keys are in Unicode's composed form (NFC) from now on (`case_key` in
-- src/domain/query.rs): the same word typed with its accents decomposed (`e` + U+0301, as some
-- systems type them) or composed (`é`) is one key. Keys stored before were lower-cased but kept
-- as typed, and a decomposed one would no longer meet the filters' keys: they are composed here.
-- normalize() needs a UTF8 database; no other can hold such keys.
DO $$
BEGIN
    IF (SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()) <> 'UTF8' THEN
        RETURN;
    END IF;
    -- Looked for first, holding no lock that stops writes: most databases have no such key.
    IF NOT EXISTS (SELECT 1 FROM signals
                   WHERE category_key IS NOT NFC NORMALIZED
                      OR EXISTS (SELECT 1 FROM unnest(tag_keys) AS k WHERE k IS NOT NFC NORMALIZED)) THEN
        RETURN;
    END IF;
    -- Only the keys change, which nothing a client sees shows: neither the change log nor the
    -- search documents hear of it.
    ALTER TABLE signals DISABLE TRIGGER signals_log_updates;
    ALTER TABLE signals DISABLE TRIGGER signals_index_updates;
    UPDATE signals
    SET category_key = normalize(category_key, NFC),
        tag_keys = ARRAY(SELECT normalize(k, NFC) FROM unnest(tag_keys) WITH ORDINALITY AS u(k, i) ORDER BY i)
    WHERE category_key IS NOT NFC NORMALIZED
       OR EXISTS (SELECT 1 FROM unnest(tag_keys) AS k WHERE k IS NOT NFC NORMALIZED);
    ALTER TABLE signals ENABLE TRIGGER signals_log_updates;
    ALTER TABLE signals ENABLE TRIGGER signals_index_updates;
    -- A signal given one tag twice, once composed and once decomposed, now has two equal keys:
    -- it keeps the first spelling, as one written now would. Its tags change as clients see
    -- them, so this is an update like any other: logged, its search document made again, its
    -- updated_at (and so its ETag) moved.
    UPDATE signals s
    SET tags = d.tags, tag_keys = d.keys, updated_at = now()
    FROM (SELECT x.id, array_agg(x.tag ORDER BY x.i) AS tags, array_agg(x.key ORDER BY x.i) AS keys
          FROM (SELECT s.id, t.tag, t.key, t.i,
                       row_number() OVER (PARTITION BY s.id, t.key ORDER BY t.i) AS n
                FROM signals s, unnest(s.tags, s.tag_keys) WITH ORDINALITY AS t(tag, key, i)
                WHERE cardinality(s.tag_keys) > (SELECT count(DISTINCT k) FROM unnest(s.tag_keys) AS k)) x
          WHERE x.n = 1
          GROUP BY x.id) d
    WHERE s.id = d.id;
END
$$;
