-- Rewrites the signals stored before migration 12, so their sections come back from TOAST into
-- the rows (VACUUM FULL fetches a row's out-of-line values and stores the row again under the
-- table's current threshold). It holds an exclusive lock on `signals` while it runs (about 35 s
-- for a million signals) and cannot run inside a transaction, hence a migration of its own.
VACUUM FULL signals;
