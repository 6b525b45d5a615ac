-- What operators did to the log and its consumers (`vectis events republish`,
-- `vectis projections reset`), listed by `vectis audit list`. A row is written when
-- the action starts and completed with its outcome, so an action that failed or was
-- interrupted is on record too.
CREATE TABLE operator_actions (
    action_id    bigserial   PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    -- Who: `cli:<os user>` for the CLI, `key:<name>` for an API key.
    actor        text        NOT NULL CHECK (btrim(actor) <> ''),
    -- What: `events.republish`, `projections.reset`.
    action       text        NOT NULL,
    -- On what: an event id, a projection.
    target       text        NOT NULL,
    -- The arguments and what was found (positions, offsets).
    details      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Why, in the operator's words.
    reason       text        NOT NULL CHECK (btrim(reason) <> ''),
    outcome      text        NOT NULL DEFAULT 'started',
    finished_at  timestamptz
);

CREATE INDEX operator_actions_started ON operator_actions (started_at DESC);
