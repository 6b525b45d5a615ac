//! A workflow version's tables (instances with their state, pending timers) and the
//! set-based reads and writes of a batch: instances loaded and locked in one statement,
//! their new state, the steps they decided (into the shared outbox) and their timers
//! written in a few more, all in the caller's transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vectis_consumer::tables::TableSet;

use crate::workflow::{InstanceStatus, Step, TimerWish, Workflow};

/// `{schema}.instances`, `{schema}.timers` of one workflow version.
pub const TABLES_DDL: &str = "
CREATE TABLE IF NOT EXISTS {schema}.instances (
    instance_id    text        PRIMARY KEY,
    status         text        NOT NULL,
    -- What the instance waits for, in words (`vectis workflows list`).
    waiting_for    text        NOT NULL,
    state          jsonb       NOT NULL,
    -- Names of the steps issued and the timers fired: each happens once.
    issued_steps   jsonb       NOT NULL DEFAULT '[]',
    fired_timers   jsonb       NOT NULL DEFAULT '[]',
    correlation_id uuid        NOT NULL,
    last_event_id  uuid        NOT NULL,
    started_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    last_error     text
);
CREATE INDEX IF NOT EXISTS instances_by_status ON {schema}.instances (status, updated_at);
CREATE TABLE IF NOT EXISTS {schema}.timers (
    instance_id  text        NOT NULL,
    name         text        NOT NULL,
    due_at       timestamptz NOT NULL,
    -- The event whose state wanted the timer: the commands it leads to carry it.
    causation_id uuid        NOT NULL,
    armed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, name)
);
CREATE INDEX IF NOT EXISTS timers_by_due ON {schema}.timers (due_at);
";

/// The tables of a workflow version.
pub const TABLES: &[&str] = &["instances", "timers"];

/// The table set of a workflow: its instances and timers are shown to readers as
/// `read.<view_prefix>instances` and `read.<view_prefix>timers` (`order_lifecycle_`).
pub fn table_set(view_prefix: &'static str) -> TableSet {
    TableSet { ddl: TABLES_DDL, tables: TABLES, view_prefix }
}

/// The schema of the workflow's active version (`None`: not installed yet), from the
/// state every handler of the log keeps in `projections`.
pub async fn active_schema(conn: &mut PgConnection, workflow: &str) -> Result<Option<String>, sqlx::Error> {
    let state = vectis_read_side::state::state(conn, workflow).await?;
    Ok(state.map(|s| vectis_read_side::schema_name(workflow, s.active_version)))
}

/// One instance as stored, with its pending timers.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub instance_id: String,
    pub state: serde_json::Value,
    pub issued: Vec<String>,
    pub fired: Vec<String>,
    pub correlation_id: Uuid,
    pub last_event_id: Uuid,
    pub started_at: DateTime<Utc>,
    /// Its status as stored (`None`: a new instance).
    pub status: Option<InstanceStatus>,
    /// name → (due, causation)
    pub timers: HashMap<String, (DateTime<Utc>, Uuid)>,
}

/// An instance's status before (`None`: new) and after a change.
pub type Transition = (Option<InstanceStatus>, InstanceStatus);

/// What a batch (or a timer firing) changes: the instances' rows, the steps to run,
/// the timers to arm and to cancel.
#[derive(Debug, Default)]
pub struct Changes {
    pub instances: Vec<(InstanceRecord, InstanceStatus, String)>,
    pub outbox: Vec<(String, Step, Uuid, Uuid)>,
    pub arm: Vec<(String, TimerWish, Uuid)>,
    pub cancel: Vec<(String, String)>,
    /// Status changes of live instances (from, to), for the started / ended counters.
    pub transitions: Vec<Transition>,
}

impl Changes {
    /// Records `state` as the instance's new state: issues the steps not issued yet
    /// (into the outbox only when `live`: a replay decides nothing anew), arms the
    /// timers it wants that are neither pending nor fired, cancels those it no longer wants.
    pub fn reconcile<W: Workflow>(
        &mut self,
        workflow: &W,
        mut record: InstanceRecord,
        state: &W::State,
        now: DateTime<Utc>,
        causation_id: Uuid,
        live: bool,
    ) {
        let issued: HashSet<String> = record.issued.iter().cloned().collect();
        for step in workflow.steps(state, now) {
            if issued.contains(&step.name) {
                continue;
            }
            record.issued.push(step.name.clone());
            if live {
                self.outbox.push((record.instance_id.clone(), step, causation_id, record.correlation_id));
            }
        }
        let wanted: Vec<TimerWish> =
            workflow.timers(state).into_iter().filter(|t| !record.fired.contains(&t.name)).collect();
        for timer in &wanted {
            let pending = record.timers.get(&timer.name).map(|(due, _)| *due);
            if pending != Some(timer.due_at) {
                record.timers.insert(timer.name.clone(), (timer.due_at, causation_id));
                self.arm.push((record.instance_id.clone(), timer.clone(), causation_id));
            }
        }
        let unwanted: Vec<String> =
            record.timers.keys().filter(|name| !wanted.iter().any(|t| &t.name == *name)).cloned().collect();
        for name in unwanted {
            record.timers.remove(&name);
            self.cancel.push((record.instance_id.clone(), name));
        }
        record.state = serde_json::to_value(state).unwrap_or_default();
        let status = workflow.status(state);
        // A parked instance stays parked (see `save`) until an operator acts.
        if live && record.status != Some(status) && record.status != Some(InstanceStatus::Parked) {
            self.transitions.push((record.status, status));
        }
        self.instances.push((record, status, workflow.describe(state)));
    }
}

/// An `instances` row as read: id, state, issued steps, fired timers, correlation,
/// last event, start.
type StoredInstance =
    (String, serde_json::Value, serde_json::Value, serde_json::Value, Uuid, Uuid, DateTime<Utc>, InstanceStatus);

/// The instances `ids` of the version in `schema`, locked (in id order, so two
/// writers never wait on each other in a circle), with their pending timers.
pub async fn load(
    conn: &mut PgConnection,
    schema: &str,
    ids: &[String],
) -> Result<HashMap<String, InstanceRecord>, sqlx::Error> {
    let rows: Vec<StoredInstance> = sqlx::query_as(&format!(
        "SELECT instance_id, state, issued_steps, fired_timers, correlation_id, last_event_id, started_at,
                    status FROM {schema}.instances WHERE instance_id = ANY($1) ORDER BY instance_id FOR UPDATE"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let timers: Vec<(String, String, DateTime<Utc>, Uuid)> = sqlx::query_as(&format!(
        "SELECT instance_id, name, due_at, causation_id FROM {schema}.timers WHERE instance_id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let names = |value: serde_json::Value| serde_json::from_value::<Vec<String>>(value).unwrap_or_default();
    let mut records: HashMap<String, InstanceRecord> = rows
        .into_iter()
        .map(|(id, state, issued, fired, correlation_id, last_event_id, started_at, status)| {
            let record = InstanceRecord {
                instance_id: id.clone(),
                state,
                issued: names(issued),
                fired: names(fired),
                correlation_id,
                last_event_id,
                started_at,
                status: Some(status),
                timers: HashMap::new(),
            };
            (id, record)
        })
        .collect();
    for (id, name, due, causation) in timers {
        if let Some(record) = records.get_mut(&id) {
            record.timers.insert(name, (due, causation));
        }
    }
    Ok(records)
}

/// Writes `changes` in the version in `schema` of workflow `workflow`: instances
/// upserted (a parked instance stays parked until an operator retries it), steps into
/// the outbox (a step already there, decided by another version, is kept as it is),
/// timers armed and cancelled.
pub async fn save(conn: &mut PgConnection, workflow: &str, schema: &str, changes: &Changes) -> Result<(), sqlx::Error> {
    if !changes.instances.is_empty() {
        let mut ids = Vec::new();
        let (mut statuses, mut waiting, mut states, mut issued, mut fired) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut correlations, mut last_events, mut started) = (vec![], vec![], vec![]);
        for (record, status, waiting_for) in &changes.instances {
            ids.push(record.instance_id.clone());
            statuses.push(status.as_str().to_string());
            waiting.push(waiting_for.clone());
            states.push(record.state.clone());
            issued.push(serde_json::json!(record.issued));
            fired.push(serde_json::json!(record.fired));
            correlations.push(record.correlation_id);
            last_events.push(record.last_event_id);
            started.push(record.started_at);
        }
        sqlx::query(&format!(
            "INSERT INTO {schema}.instances
                 (instance_id, status, waiting_for, state, issued_steps, fired_timers, correlation_id,
                  last_event_id, started_at, updated_at)
             SELECT *, now() FROM UNNEST($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::jsonb[],
                                         $7::uuid[], $8::uuid[], $9::timestamptz[])
             ON CONFLICT (instance_id) DO UPDATE SET
                 status = CASE WHEN {schema}.instances.status = 'parked' THEN 'parked' ELSE EXCLUDED.status END,
                 waiting_for = EXCLUDED.waiting_for, state = EXCLUDED.state,
                 issued_steps = EXCLUDED.issued_steps, fired_timers = EXCLUDED.fired_timers,
                 last_event_id = EXCLUDED.last_event_id, updated_at = now()"
        ))
        .bind(&ids)
        .bind(&statuses)
        .bind(&waiting)
        .bind(&states)
        .bind(&issued)
        .bind(&fired)
        .bind(&correlations)
        .bind(&last_events)
        .bind(&started)
        .execute(&mut *conn)
        .await?;
    }
    if !changes.outbox.is_empty() {
        let (mut ids, mut steps, mut commands, mut causations, mut correlations) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (instance, step, causation, correlation) in &changes.outbox {
            ids.push(instance.clone());
            steps.push(step.name.clone());
            commands.push(serde_json::to_value(&step.command).unwrap_or_default());
            causations.push(*causation);
            correlations.push(*correlation);
        }
        sqlx::query(
            "INSERT INTO workflow_outbox (workflow, instance_id, step, command, causation_id, correlation_id)
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::jsonb[], $5::uuid[], $6::uuid[])
             ON CONFLICT (workflow, instance_id, step) DO NOTHING",
        )
        .bind(workflow)
        .bind(&ids)
        .bind(&steps)
        .bind(&commands)
        .bind(&causations)
        .bind(&correlations)
        .execute(&mut *conn)
        .await?;
    }
    if !changes.cancel.is_empty() {
        let (ids, names): (Vec<String>, Vec<String>) = changes.cancel.iter().cloned().unzip();
        sqlx::query(&format!(
            "DELETE FROM {schema}.timers t USING UNNEST($1::text[], $2::text[]) AS c(instance_id, name)
              WHERE t.instance_id = c.instance_id AND t.name = c.name"
        ))
        .bind(&ids)
        .bind(&names)
        .execute(&mut *conn)
        .await?;
    }
    if !changes.arm.is_empty() {
        let (mut ids, mut names, mut dues, mut causations) = (vec![], vec![], vec![], vec![]);
        for (instance, timer, causation) in &changes.arm {
            ids.push(instance.clone());
            names.push(timer.name.clone());
            dues.push(timer.due_at);
            causations.push(*causation);
        }
        sqlx::query(&format!(
            "INSERT INTO {schema}.timers (instance_id, name, due_at, causation_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::uuid[])
             ON CONFLICT (instance_id, name) DO UPDATE
                SET due_at = EXCLUDED.due_at, causation_id = EXCLUDED.causation_id, armed_at = now()"
        ))
        .bind(&ids)
        .bind(&names)
        .bind(&dues)
        .bind(&causations)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
