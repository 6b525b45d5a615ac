-- The archive's cursor (`vectis archive export`, the relay's archive job): per archive
-- location, the last global position its files cover. It moves past a file only
-- after the file is stored, so a run resumes after the last complete file.
CREATE TABLE archive_cursors (
    archive          text        PRIMARY KEY,
    global_position  bigint      NOT NULL DEFAULT 0,
    files            bigint      NOT NULL DEFAULT 0,
    events           bigint      NOT NULL DEFAULT 0,
    bytes            bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
