-- A text search now always looks first among the newest documents: the service keeps a GIN
-- index of them (`signal_search_recent_<unix seconds>`, a partial index it builds and moves on
-- itself: `src/db/search_index.rs`), so a look that finds too few costs a fraction of a
-- millisecond, and the planner's estimate that decided whether to look is no longer asked.
-- The function stays for instances of earlier versions still serving during a rolling deploy
-- (they call it for every ranked search); a later migration may drop it.
COMMENT ON FUNCTION signal_search_estimate(tsquery) IS
    'Unused since migration 18; kept for instances of earlier versions during a rolling deploy.';
