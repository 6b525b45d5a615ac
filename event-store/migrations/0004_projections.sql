-- The projectors' bookkeeping. Read-model tables themselves live in one PostgreSQL
-- schema per projection version (`proj_<name>_v<version>`), created by the projector
-- that builds them; readers use the views in schema `read`, which point at the active
-- version, so a rebuild switches them atomically.
CREATE SCHEMA IF NOT EXISTS read;

CREATE TABLE projections (
    name           text        PRIMARY KEY,
    -- The version readers see through the `read` views.
    active_version integer     NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Where each projection version has got to, per topic partition: the next Kafka
-- offset to apply. Written in the same transaction as the read-model changes, so
-- PostgreSQL, not the broker's committed offsets, is the truth.
CREATE TABLE projection_checkpoints (
    projection  text        NOT NULL,
    version     integer     NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, version, topic, partition)
);

-- Events a projection could not apply (undecodable, unknown type, a gap in a
-- stream's versions, an apply that keeps failing), and the later events of the same
-- stream parked behind them so that per-stream order holds.
CREATE TABLE projection_dead_letters (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection     text        NOT NULL,
    version        integer     NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    -- The record key; NULL when the record had none.
    stream_id      text,
    stream_version bigint,
    event_type     text,
    payload        bytea       NOT NULL,
    error          text        NOT NULL,
    -- 'parked' until retried successfully ('applied') or discarded ('discarded').
    status         text        NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'applied', 'discarded')),
    parked_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    UNIQUE (projection, version, topic, partition, "offset")
);
CREATE INDEX projection_dead_letters_parked
    ON projection_dead_letters (projection, version, stream_id) WHERE status = 'parked';
