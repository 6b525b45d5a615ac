-- Snapshots of aggregate state: derived from the events and disposable (`vectis
-- snapshots purge` may drop any of them at any time), never the source of truth.
-- One row per stream: the newest snapshot. `state_version` is the aggregate code's
-- version of its state and `evolve`; a loader whose version differs ignores the row
-- and the next command replaces it. `last_event_id` is the event the state ends at:
-- the loader uses a snapshot only while that event is still the stream's event at
-- `stream_version`.
CREATE TABLE snapshots (
    stream_id      text        PRIMARY KEY,
    aggregate      text        NOT NULL,
    state_version  integer     NOT NULL,
    stream_version bigint      NOT NULL CHECK (stream_version >= 1),
    last_event_id  uuid        NOT NULL,
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now()
);

-- An inventory item's state keeps only the reservations still held; a command naming
-- a reservation closed or rejected long ago asks the store for that reservation's
-- events, through this index, instead of every state carrying every reservation.
CREATE INDEX events_reservation_id ON events ((data->>'reservation_id'), stream_id)
    WHERE data ? 'reservation_id';
