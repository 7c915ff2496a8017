-- A search document is stored as it is, never compressed. Documents wider than about 2 KB (most
-- of them) go out of line to TOAST, and PostgreSQL tried pglz on each before it moved it: a
-- tsvector (sorted distinct lexemes and their positions) does not shrink by the quarter pglz
-- asks for, so the attempt was wasted. None of the 100,000 documents of the ingest benchmark
-- nor of a 1 % sample of the read benchmark's million was stored compressed, nor the example
-- signal's; the attempts were 3.5 % of PostgreSQL's time in `signals import` (docs/benchmark.md,
-- fourteenth run). EXTERNAL moves them out of line the same way, without the attempt. It applies
-- to documents written from now on; those stored already are unchanged.
ALTER TABLE signal_search ALTER COLUMN search SET STORAGE EXTERNAL;
