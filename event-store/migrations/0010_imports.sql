-- Bulk imports (`vectis import`, `POST /v1/imports`). An import is its kind and its
-- file's SHA-256: the same file again is the same import. Its rows commit in batches,
-- each batch in one transaction with the events it appended and `rows_through`
-- advanced to its last row, so a re-run or a resumed run skips every row at or
-- below it and nothing is appended twice.
CREATE TABLE imports (
    import_id    uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('items', 'prices', 'accounts')),
    file_sha256  text        NOT NULL,
    file_name    text        NOT NULL,
    format       text        NOT NULL CHECK (format IN ('csv', 'ndjson')),
    -- Header renames (`{"list_price": "unit_price_minor"}`); a resumed run must use the same.
    mapping      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Who ran it (`staff:<key name>`, `cli:<os user>`); also the `changed_by` of its price changes.
    actor        text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed')),
    total_rows   bigint      NOT NULL CHECK (total_rows >= 0),
    rows_through bigint      NOT NULL DEFAULT 0,
    done         bigint      NOT NULL DEFAULT 0,
    failed       bigint      NOT NULL DEFAULT 0,
    -- Why a run stopped (an infrastructure failure; rejected rows are not failures of the run).
    error        text,
    -- A file uploaded through the API, kept until the import finishes so a restarted
    -- process can resume it.
    content      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CONSTRAINT imports_file_unique UNIQUE (kind, file_sha256)
);

-- Rows refused, with the reason a request with the same body would have got.
CREATE TABLE import_rejections (
    import_id  uuid   NOT NULL REFERENCES imports (import_id) ON DELETE CASCADE,
    row_number bigint NOT NULL,
    reason     text   NOT NULL,
    record     text   NOT NULL,
    PRIMARY KEY (import_id, row_number)
);
