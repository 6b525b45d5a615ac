//! The commands workflows decide, as stored in the outbox, and how one runs: through
//! the command side's own handling (same validation, domain rules and events), in
//! process, under an idempotency key, with the trigger as `causation_id` and the
//! workflow as the actor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use vectis_command_api::{
    domain::{Account, AccountCommand, InventoryCommand, InventoryItem, Order, OrderCommand, APPROVAL_TIMED_OUT},
    handling::{CommandError, CommandHandler, CommandOutcome, StoreSession},
    http::problem::ApiError,
};
use vectis_event_store::{EventMetadata, IdempotencyBegin, IdempotencyKey, StoreError, StoredResponse};
use vectis_schemas::{events::HeldLine, IdError, StreamId};

/// A command a workflow decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkflowCommand {
    /// Hold `quantity` of `sku` for the order, for `hold_for_ms` from when it runs
    /// (not from when it was decided: a command that waited out a downtime still
    /// holds for the whole time).
    Reserve {
        sku: String,
        reservation_id: Uuid,
        order_id: Uuid,
        quantity: i64,
        hold_for_ms: u64,
    },
    Release {
        sku: String,
        reservation_id: Uuid,
        reason: String,
    },
    Commit {
        sku: String,
        reservation_id: Uuid,
    },
    Expire {
        sku: String,
        reservation_id: Uuid,
    },
    HoldStock {
        order_id: Uuid,
        reservations: Vec<HeldLine>,
        expires_at: DateTime<Utc>,
    },
    /// Rejects an order its lifecycle cannot fulfil (not one waiting for approval).
    RejectOrder {
        order_id: Uuid,
        reason: String,
    },
    /// Rejects an order still awaiting approval ("approval timed out").
    TimeOutOrderApproval {
        order_id: Uuid,
    },
    /// Rejects an account still pending approval ("approval timed out").
    TimeOutAccountApproval {
        account_id: Uuid,
    },
    /// Places run `run` of a recurring order (or records why it places nothing).
    PlaceRecurringRun {
        account_id: Uuid,
        recurring_order_id: Uuid,
        run: i64,
        scheduled_for: DateTime<Utc>,
    },
}

impl WorkflowCommand {
    /// A short name for logs, metrics and `vectis workflows show`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reserve { .. } => "reserve",
            Self::Release { .. } => "release",
            Self::Commit { .. } => "commit",
            Self::Expire { .. } => "expire",
            Self::HoldStock { .. } => "hold_stock",
            Self::RejectOrder { .. } => "reject_order",
            Self::TimeOutOrderApproval { .. } => "time_out_order_approval",
            Self::TimeOutAccountApproval { .. } => "time_out_account_approval",
            Self::PlaceRecurringRun { .. } => "place_recurring_run",
        }
    }
}

/// What running a command did, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The HTTP status the same command would have been answered with.
    pub status: u16,
    pub stream_id: Option<String>,
    pub stream_version: Option<i64>,
    /// The types of the events appended (empty: nothing changed).
    #[serde(default)]
    pub events: Vec<String>,
    /// Why it was refused (4xx).
    pub refusal: Option<String>,
}

impl CommandResult {
    pub fn is_refusal(&self) -> bool {
        (400..500).contains(&self.status)
    }
}

/// Why a command could not be run: not an answer, so it is retried.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the command names no valid stream: {0}")]
    Stream(#[from] IdError),
    #[error("idempotency record: {0}")]
    Idempotency(#[source] StoreError),
    #[error("another run of this step holds its idempotency key")]
    InProgress,
    #[error("the idempotency key was used for a different command")]
    KeyReused,
    #[error("the command failed: {0}")]
    Failed(#[source] CommandError),
}

/// Who a workflow's commands are by, and the idempotency scope of its keys.
pub fn actor(workflow: &str) -> String {
    format!("workflow:{workflow}")
}

/// One outbox row's command and its context.
pub struct Decided<'a> {
    pub workflow: &'a str,
    pub instance_id: &'a str,
    pub step: &'a str,
    pub command: &'a WorkflowCommand,
    pub causation_id: Uuid,
    pub correlation_id: Uuid,
}

/// Runs the command once under its idempotency key: a re-run (after a crash) gets
/// the stored result and appends nothing.
pub async fn run(
    handler: &CommandHandler,
    decided: &Decided<'_>,
    retention: Duration,
) -> Result<CommandResult, RunError> {
    let key =
        IdempotencyKey { scope: actor(decided.workflow), key: format!("{}/{}", decided.instance_id, decided.step) };
    let fingerprint = Sha256::digest(serde_json::to_vec(decided.command).unwrap_or_default()).to_vec();
    match handler.store().begin_idempotent(key, &fingerprint, retention).await.map_err(RunError::Idempotency)? {
        IdempotencyBegin::Replay(stored) => Ok(serde_json::from_slice(&stored.body).unwrap_or(CommandResult {
            status: stored.status,
            stream_id: None,
            stream_version: None,
            events: vec![],
            refusal: None,
        })),
        IdempotencyBegin::InProgress => Err(RunError::InProgress),
        IdempotencyBegin::Mismatch => Err(RunError::KeyReused),
        IdempotencyBegin::Fresh(mut claimed) => {
            let result = execute(handler, &mut claimed, decided).await?;
            let stored = StoredResponse {
                status: result.status,
                content_type: "application/json".into(),
                body: serde_json::to_vec(&result).unwrap_or_default(),
            };
            claimed.complete(&stored).await.map_err(RunError::Idempotency)?;
            Ok(result)
        }
    }
}

/// Runs the command in `session`: a refusal is a result, a server failure an error.
async fn execute(
    handler: &CommandHandler,
    session: &mut impl StoreSession,
    decided: &Decided<'_>,
) -> Result<CommandResult, RunError> {
    let metadata = EventMetadata {
        correlation_id: decided.correlation_id,
        causation_id: Some(decided.causation_id),
        traceparent: None,
    };
    let by = actor(decided.workflow);
    let outcome = match decided.command.clone() {
        WorkflowCommand::Reserve { sku, reservation_id, order_id, quantity, hold_for_ms } => {
            let stream = StreamId::inventory_item(&sku)?;
            inventory(handler, session, &stream, &metadata, move || {
                let now = Utc::now();
                let hold = chrono::Duration::milliseconds(i64::try_from(hold_for_ms).unwrap_or(i64::MAX));
                InventoryCommand::Reserve { reservation_id, order_id, quantity, expires_at: now + hold, now }
            })
            .await
        }
        WorkflowCommand::Release { sku, reservation_id, reason } => {
            let stream = StreamId::inventory_item(&sku)?;
            inventory(handler, session, &stream, &metadata, move || InventoryCommand::Release {
                reservation_id,
                reason: Some(reason.clone()),
            })
            .await
        }
        WorkflowCommand::Commit { sku, reservation_id } => {
            let stream = StreamId::inventory_item(&sku)?;
            inventory(handler, session, &stream, &metadata, move || InventoryCommand::Commit { reservation_id }).await
        }
        WorkflowCommand::Expire { sku, reservation_id } => {
            let stream = StreamId::inventory_item(&sku)?;
            inventory(handler, session, &stream, &metadata, move || InventoryCommand::Expire {
                reservation_id,
                now: Utc::now(),
            })
            .await
        }
        WorkflowCommand::HoldStock { order_id, reservations, expires_at } => {
            order(handler, session, order_id, &metadata, move || OrderCommand::HoldStock {
                reservations: reservations.clone(),
                expires_at,
            })
            .await
        }
        WorkflowCommand::RejectOrder { order_id, reason } => {
            order(handler, session, order_id, &metadata, move || OrderCommand::RejectUnfulfillable {
                by: by.clone(),
                reason: reason.clone(),
            })
            .await
        }
        WorkflowCommand::TimeOutOrderApproval { order_id } => {
            order(handler, session, order_id, &metadata, move || OrderCommand::TimeOutApproval { by: by.clone() }).await
        }
        WorkflowCommand::TimeOutAccountApproval { account_id } => {
            let stream = StreamId::account(account_id);
            handler
                .execute::<Account, _>(session, &stream, None, &metadata, |_| AccountCommand::Reject {
                    by: by.clone(),
                    reason: APPROVAL_TIMED_OUT.into(),
                })
                .await
        }
        WorkflowCommand::PlaceRecurringRun { account_id, recurring_order_id, run, scheduled_for } => {
            let run = crate::recurring_run::Run { account_id, recurring_order_id, run, scheduled_for };
            crate::recurring_run::place(handler, session, &metadata, run).await
        }
    };
    match outcome {
        Ok(outcome) => Ok(CommandResult {
            status: 200,
            stream_id: Some(outcome.stream_id.to_string()),
            stream_version: Some(outcome.stream_version),
            events: outcome.events.iter().map(|e| e.envelope.event_type.clone()).collect(),
            refusal: None,
        }),
        Err(error) if error.is_rejection() => {
            let refusal = Some(error.to_string());
            let status = ApiError::from(error).status().as_u16();
            Ok(CommandResult { status, stream_id: None, stream_version: None, events: vec![], refusal })
        }
        Err(error) => Err(RunError::Failed(error)),
    }
}

/// Runs an inventory command on the item's stream.
async fn inventory(
    handler: &CommandHandler,
    session: &mut impl StoreSession,
    stream: &StreamId,
    metadata: &EventMetadata,
    command: impl Fn() -> InventoryCommand + Send + Sync,
) -> Result<CommandOutcome, CommandError> {
    handler.execute::<InventoryItem, _>(session, stream, None, metadata, |_| command()).await
}

/// Runs an order command on the order's stream.
async fn order(
    handler: &CommandHandler,
    session: &mut impl StoreSession,
    order_id: Uuid,
    metadata: &EventMetadata,
    command: impl Fn() -> OrderCommand + Send + Sync,
) -> Result<CommandOutcome, CommandError> {
    handler.execute::<Order, _>(session, &StreamId::order(order_id), None, metadata, |_| command()).await
}
