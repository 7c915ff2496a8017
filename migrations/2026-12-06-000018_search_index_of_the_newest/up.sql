-- A text search now always looks first among the newest documents: the service keeps a GIN
-- index of them (`signal_search_recent_<unix seconds>`, a partial index it builds and moves on
-- itself: `src/db/search_index.rs`), so a look that finds too few costs a fraction of a
-- millisecond, and the planner's estimate that decided whether to look is not needed.
DROP FUNCTION signal_search_estimate(tsquery);
