-- Nothing to undo: the rows stay as they are; migration 12's down restores the threshold for
-- rows written from then on.
SELECT 1;
