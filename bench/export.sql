-- The client fields of the benchmark's signals as JSON lines, oldest first, as `signals import`
-- reads them (bench/run.sh loads its database with them; bench/ingest.sh takes the first
-- :limit of them). Run with psql -X -At -v limit=ALL (or a number).
SELECT json_build_object('slug', slug, 'title', title, 'summary', summary, 'body', body,
                         'score', score, 'category', category, 'published_at', published_at,
                         'sections', sections, 'tags', tags, 'source_url', source_url)
FROM signals
ORDER BY published_at
LIMIT :limit;
