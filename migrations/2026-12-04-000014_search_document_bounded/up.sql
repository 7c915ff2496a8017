-- A search document is at most 1 MB of distinct words (PostgreSQL's limit for a tsvector:
-- "string is too long for tsvector"). A signal within every limit of the API can hold more:
-- twenty sections of 20,000 characters of distinct long words in a three-byte script are
-- 1.2 MB, and its write failed as a condition of the database (503, retried for nothing). The
-- sections' bodies are now indexed up to their first 120,000 characters (six full sections;
-- everything else is far smaller): with four bytes a character at most, and the other fields
-- at their limits, the document stays under the limit. Documents already made are unchanged.
CREATE OR REPLACE FUNCTION signal_search_document(s signals) RETURNS tsvector LANGUAGE sql STABLE AS $$
    SELECT setweight(to_tsvector('english'::regconfig, s.title), 'A') ||
           setweight(to_tsvector('english'::regconfig, array_to_string(s.tags, ' ')), 'A') ||
           setweight(to_tsvector('english'::regconfig, s.summary), 'B') ||
           setweight(to_tsvector('english'::regconfig,
               coalesce((SELECT string_agg(x ->> 'heading', ' ') FROM jsonb_array_elements(s.sections) AS x), '')), 'B') ||
           setweight(to_tsvector('english'::regconfig, s.body), 'C') ||
           setweight(to_tsvector('english'::regconfig,
               left(coalesce((SELECT string_agg(x ->> 'body', ' ') FROM jsonb_array_elements(s.sections) AS x), ''), 120000)), 'C')
$$;
