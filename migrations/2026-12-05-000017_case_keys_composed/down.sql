-- The keys stay composed: filters made before this migration meet them too, unless typed
-- decomposed.
SELECT 1;
