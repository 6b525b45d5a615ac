-- The lag the projectors measure (broker high watermark minus checkpoint, and the age
-- of the oldest unapplied event), one row per projection version, so that readers
-- without a broker client (the query API) can show it, and it stays visible when the
-- process that measured it is gone.
CREATE TABLE projection_lag (
    projection           text        NOT NULL,
    version              integer     NOT NULL,
    events               bigint      NOT NULL,
    oldest_unapplied_at  timestamptz,
    measured_at          timestamptz NOT NULL,
    PRIMARY KEY (projection, version)
);
