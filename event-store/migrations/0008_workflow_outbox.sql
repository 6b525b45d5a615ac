-- The workflows' outbox: every command a workflow instance decided, written in the
-- same transaction as the instance's state and its checkpoint, then run through the
-- command side's handling under the idempotency key `<instance>/<step>` (scope
-- `workflow:<workflow>`). One row per step of an instance, whatever version of the
-- workflow's state decided it: a rebuilt version that decides a step again adds
-- nothing, and a crash re-runs the same row, which appends once.
CREATE TABLE workflow_outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow        text        NOT NULL,
    instance_id     text        NOT NULL,
    step            text        NOT NULL,
    command         jsonb       NOT NULL,
    -- The event (or the timer's event) that led to the decision, and the business
    -- conversation it belongs to: the appended events carry both.
    causation_id    uuid        NOT NULL,
    correlation_id  uuid        NOT NULL,
    -- pending: to run (again at next_attempt_at); done: appended or changed nothing;
    -- refused: the domain refused it (4xx, kept as the outcome); parked: failed too
    -- often, waits for `vectis workflows retry|discard`; discarded: an operator gave up.
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'done', 'refused', 'parked', 'discarded')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    -- What the command did: the stream, its new version and the event types, or the refusal.
    outcome         jsonb,
    decided_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    UNIQUE (workflow, instance_id, step)
);
CREATE INDEX workflow_outbox_due ON workflow_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX workflow_outbox_instance ON workflow_outbox (workflow, instance_id, id);
