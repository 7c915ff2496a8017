DROP FUNCTION signal_search_estimate(tsquery);
