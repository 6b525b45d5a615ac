-- A point in the allocation of global positions, in one round trip: the sequence's
-- last value, then a transaction id assigned after it was read (see `Horizon` in
-- event-store/src/store.rs). The statements of a PL/pgSQL function run in order; the
-- id is the calling statement's own, so it ends when that statement does.
CREATE FUNCTION relay_horizon(OUT last_position bigint, OUT next_xid bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO last_position FROM events_global_position_seq;
    next_xid := pg_current_xact_id()::text::bigint;
END
$$;
