-- How many search documents the planner expects a text query to match (its estimate from the
-- table's statistics, about 0.2 ms: the statement is planned, not run). A search uses it to
-- decide whether its newest matches are worth looking for among the newest documents first
-- (`src/db/lists.rs`, `Horizon`): a word in a few percent of the documents has its 1,000 newest
-- matches among the newest tens of thousands, and PostgreSQL combines that time bound with the
-- GIN index instead of reading the times of every match; for a rare query the try would be
-- wasted. VOLATILE because PostgreSQL allows EXPLAIN only there.
CREATE FUNCTION signal_search_estimate(q tsquery) RETURNS float8 LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM signal_search WHERE search @@ $1' INTO plan USING q;
    RETURN (plan -> 0 -> 'Plan' ->> 'Plan Rows')::float8;
END
$$;
