//! One run of a recurring order, as its step runs it: in the step's transaction, read
//! the account and the catalogue, then record the run placed and place the order
//! (priced from today's catalogue), or record it skipped and why. Recording and placing
//! commit together under the step's idempotency key, so a run places one order, once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::Digest;
use uuid::Uuid;
use vectis_command_api::{
    domain::{
        Account, AccountCommand, AccountStatus, DomainError, InventoryItem, Order, OrderCommand, OrderLineRequest,
        RecurringOrder, RecurringOrderCommand, RecurringStatus, RunOutcome,
    },
    handling::{CommandError, CommandHandler, CommandOutcome, StoreSession, StreamKnown},
};
use vectis_event_store::EventMetadata;
use vectis_schemas::StreamId;

/// The run to place.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub account_id: Uuid,
    pub recurring_order_id: Uuid,
    pub run: i64,
    pub scheduled_for: DateTime<Utc>,
}

impl Run {
    /// The order a run places: the same id every time the run is tried, time-ordered
    /// by the run's due time like every other order id (UUIDv7).
    pub fn order_id(&self) -> Uuid {
        let digest = sha2::Sha256::digest(format!("{}/{}", self.recurring_order_id, self.run));
        let mut random = [0u8; 10];
        random.copy_from_slice(&digest[..10]);
        let millis = u64::try_from(self.scheduled_for.timestamp_millis()).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }
}

/// Records the run, then places its order, or records why not. The record comes
/// first: a run a resumption passed over meanwhile records nothing, and then places
/// nothing. Returns the account's outcome, with the order's events after it.
pub async fn place(
    handler: &CommandHandler,
    session: &mut impl StoreSession,
    metadata: &EventMetadata,
    run: Run,
) -> Result<CommandOutcome, CommandError> {
    let account_stream = StreamId::account(run.account_id);
    let loaded = handler.load_in::<Account>(session, &account_stream).await?;
    let account = loaded.state.ok_or_else(|| DomainError::NotFound("the account is not registered".into()))?;
    let recurring = account.recurring_orders.get(&run.recurring_order_id).cloned().ok_or_else(|| {
        DomainError::NotFound(format!("account {} has no recurring order {}", run.account_id, run.recurring_order_id))
    })?;
    if recurring.is_settled(run.run) {
        return Ok(CommandOutcome { stream_id: account_stream, stream_version: loaded.version, events: vec![] });
    }
    let placement = match skip_reason(&account, &recurring) {
        Some(reason) => Err(reason),
        None => order_for(handler, session, account, &recurring, &run).await?,
    };
    let outcome = match &placement {
        Ok(_) => RunOutcome::Placed { order_id: run.order_id() },
        Err(reason) => RunOutcome::Skipped { reason: reason.clone() },
    };
    let record = AccountCommand::Recurring(RecurringOrderCommand::RecordRun {
        recurring_order_id: run.recurring_order_id,
        run: run.run,
        scheduled_for: run.scheduled_for,
        outcome,
    });
    let mut recorded =
        handler.execute::<Account, _>(session, &account_stream, None, metadata, |_| record.clone()).await?;
    if let (Ok(place), false) = (placement, recorded.events.is_empty()) {
        let stream = StreamId::order(run.order_id());
        let placed = handler
            .execute_on::<Order, _>(session, StreamKnown::New, &stream, None, metadata, |_| place.clone())
            .await?;
        recorded.events.extend(placed.events);
    }
    Ok(recorded)
}

/// Why the run places nothing, before looking at the catalogue.
fn skip_reason(account: &Account, recurring: &RecurringOrder) -> Option<String> {
    match recurring.status {
        RecurringStatus::Cancelled => Some("the recurring order was cancelled".into()),
        RecurringStatus::Paused => Some("the recurring order was paused".into()),
        RecurringStatus::Active => {
            (account.status != AccountStatus::Approved).then(|| format!("the account is {}", account.status))
        }
    }
}

/// The order the run places, on today's catalogue, already decided (so placing it
/// cannot be refused); `Err(reason)` when stock is short or the order would be refused
/// (its credit limit, a SKU gone).
async fn order_for(
    handler: &CommandHandler,
    session: &mut impl StoreSession,
    account: Account,
    recurring: &RecurringOrder,
    run: &Run,
) -> Result<Result<OrderCommand, String>, CommandError> {
    let mut catalogue = BTreeMap::new();
    let mut short = Vec::new();
    for line in &recurring.lines {
        let stream =
            StreamId::inventory_item(&line.sku).map_err(|e| CommandError::Domain(DomainError::Rule(e.to_string())))?;
        match handler.load_in::<InventoryItem>(session, &stream).await?.state {
            Some(item) if item.available() < line.quantity => {
                short.push(format!("{} needs {}, {} available", line.sku, line.quantity, item.available()))
            }
            Some(item) => {
                catalogue.insert(item.sku.clone(), item);
            }
            None => short.push(format!("{} is not in the catalogue", line.sku)),
        }
    }
    if !short.is_empty() {
        return Ok(Err(format!("stock short: {}", short.join("; "))));
    }
    let place = OrderCommand::Place {
        order_id: run.order_id(),
        account_id: run.account_id,
        account: Some(account),
        lines: recurring.lines.iter().map(|l| OrderLineRequest { sku: l.sku.clone(), quantity: l.quantity }).collect(),
        catalogue,
    };
    Ok(match Order::decide(&None, place.clone()) {
        Ok(_) => Ok(place),
        Err(refusal) => Err(format!("the order was refused: {refusal}")),
    })
}
