-- The event store: the source of truth. Topics on the broker are a relayed copy.

CREATE TABLE streams (
    stream_id   text        PRIMARY KEY,
    version     bigint      NOT NULL CHECK (version >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    global_position bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version >= 1),
    topic           text        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    data            jsonb       NOT NULL,
    -- correlation_id, causation_id, traceparent: what the envelope and headers carry
    -- besides the event itself.
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The writing transaction. The relay only reads rows whose transaction is older
    -- than every transaction still running (see relay.rs), so late commits are
    -- never skipped.
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

-- The relay cursor. One row per relay name; advanced only after every delivery
-- report of a batch came back.
CREATE TABLE relay_cursors (
    relay_name      text        PRIMARY KEY,
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Idempotency records (Stripe's semantics): the same key and the same request get
-- the stored response byte for byte; the same key with another request is refused.
CREATE TABLE idempotency_records (
    scope          text        NOT NULL,
    idempotency_key text       NOT NULL,
    request_hash   bytea       NOT NULL,
    -- NULL while the first request is still running (its transaction holds the row).
    response_status smallint,
    response_content_type text,
    response_body  bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);

CREATE INDEX idempotency_records_expires_at ON idempotency_records (expires_at);
