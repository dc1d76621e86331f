-- vecplug schema version 4: chunked vectorizers and format templates (issue 21).
--
-- A chunked vectorizer (create_vectorizer(..., chunk_tokens => N)) writes
-- one row per passage of a text into a destination table instead of one
-- vector into the source table: `destination` is that table, and
-- `embedding_attnum` then numbers its vector column (not the source's).
-- `format` is a template such as E'title: {title}\n\n{chunk}' for the text
-- embedded; `format_attnums` are the source's columns it names, by number
-- and in the order they first appear in it, so renaming a column keeps it.

ALTER TABLE vecplug.vectorizers
    ADD COLUMN destination regclass,
    ADD COLUMN destination_name text,
    ADD COLUMN chunk_tokens integer CHECK (chunk_tokens > 0),
    ADD COLUMN chunk_overlap integer NOT NULL DEFAULT 0 CHECK (chunk_overlap >= 0),
    ADD COLUMN late_chunking boolean NOT NULL DEFAULT false,
    ADD COLUMN format text,
    ADD COLUMN format_attnums smallint[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT vectorizers_chunking CHECK (
        (destination IS NULL) = (chunk_tokens IS NULL)
        AND (chunk_tokens IS NOT NULL OR (chunk_overlap = 0 AND NOT late_chunking))
        AND chunk_overlap < coalesce(chunk_tokens, 1));

-- One vectorizer per vector column: (source, embedding_attnum) for the
-- others, and one per destination table for chunked ones (whose attnum
-- numbers a column of the destination, not of the source).
ALTER TABLE vecplug.vectorizers DROP CONSTRAINT vectorizers_source_embedding_attnum_key;
CREATE UNIQUE INDEX vectorizers_source_embedding ON vecplug.vectorizers (source, embedding_attnum)
    WHERE destination IS NULL;
CREATE UNIQUE INDEX vectorizers_destination ON vecplug.vectorizers (destination) WHERE destination IS NOT NULL;
