-- vecplug schema version 6: re-embedding chunked vectorizers (issue 21).
--
-- A chunked vectorizer moves to another model through a shadow destination
-- table (<destination>_vecplug_next), filled by `vecplug pg reembed` while
-- queries keep using the old chunks, and swapped in at the end.
-- `next_destination` is that table; next_attnum then numbers its vector
-- column (not the source's), as embedding_attnum does for destination.

ALTER TABLE vecplug.vectorizers ADD COLUMN next_destination regclass;
