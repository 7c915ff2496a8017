CREATE OR REPLACE FUNCTION signal_search_document(s signals) RETURNS tsvector LANGUAGE sql STABLE AS $$
    SELECT setweight(to_tsvector('english'::regconfig, s.title), 'A') ||
           setweight(to_tsvector('english'::regconfig, array_to_string(s.tags, ' ')), 'A') ||
           setweight(to_tsvector('english'::regconfig, s.summary), 'B') ||
           setweight(to_tsvector('english'::regconfig,
               coalesce((SELECT string_agg(x ->> 'heading', ' ') FROM jsonb_array_elements(s.sections) AS x), '')), 'B') ||
           setweight(to_tsvector('english'::regconfig, s.body), 'C') ||
           setweight(to_tsvector('english'::regconfig,
               coalesce((SELECT string_agg(x ->> 'body', ' ') FROM jsonb_array_elements(s.sections) AS x), '')), 'C')
$$;
