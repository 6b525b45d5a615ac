//! One run of a recurring order, as its step runs it: in the step's transaction, read
//! the account and the catalogue, then place the order (priced from today's catalogue)
//! and record the run placed, or record it skipped and why. Placing and recording
//! commit together under the step's idempotency key, so a run places one order, once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::Digest;
use uuid::Uuid;
use vectis_command_api::{
    domain::{
        Account, AccountCommand, AccountStatus, DomainError, InventoryItem, Order, OrderCommand, OrderLineRequest,
        RecurringOrderCommand, RecurringStatus, RunOutcome,
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

/// Places the run or records why not. Returns the account's outcome, with the order's
/// events first when one was placed.
pub async fn place(
    handler: &CommandHandler,
    session: &mut impl StoreSession,
    metadata: &EventMetadata,
    run: Run,
) -> Result<CommandOutcome, CommandError> {
    let account_stream = StreamId::account(run.account_id);
    let loaded = handler.load_in::<Account>(session, &account_stream).await?;
    let account = loaded.state;
    let recorded = account.as_ref().and_then(|a| a.recurring_orders.get(&run.recurring_order_id));
    if recorded.is_some_and(|r| r.is_recorded(run.run)) {
        return Ok(CommandOutcome { stream_id: account_stream, stream_version: loaded.version, events: vec![] });
    }
    let (outcome, mut events) = match why_not(account.as_ref(), &run) {
        Some(reason) => (RunOutcome::Skipped { reason }, vec![]),
        None => match place_order(handler, session, metadata, account, &run).await? {
            Ok(placed) => (RunOutcome::Placed { order_id: run.order_id() }, placed.events),
            Err(reason) => (RunOutcome::Skipped { reason }, vec![]),
        },
    };
    let record = AccountCommand::Recurring(RecurringOrderCommand::RecordRun {
        recurring_order_id: run.recurring_order_id,
        run: run.run,
        scheduled_for: run.scheduled_for,
        outcome,
    });
    let mut recorded =
        handler.execute::<Account, _>(session, &account_stream, None, metadata, |_| record.clone()).await?;
    events.append(&mut recorded.events);
    recorded.events = events;
    Ok(recorded)
}

/// Why the run places nothing, before looking at the catalogue.
fn why_not(account: Option<&Account>, run: &Run) -> Option<String> {
    let account = account?;
    let recurring = account.recurring_orders.get(&run.recurring_order_id)?;
    if recurring.status == RecurringStatus::Cancelled {
        return Some("the recurring order was cancelled".into());
    }
    if recurring.status == RecurringStatus::Paused || run.run < recurring.resume_from {
        return Some("the recurring order was paused".into());
    }
    (account.status != AccountStatus::Approved).then(|| format!("the account is {}", account.status))
}

/// Places the order on today's catalogue; `Err(reason)` when stock is short or the
/// order is refused (its credit limit, a SKU gone).
async fn place_order(
    handler: &CommandHandler,
    session: &mut impl StoreSession,
    metadata: &EventMetadata,
    account: Option<Account>,
    run: &Run,
) -> Result<Result<CommandOutcome, String>, CommandError> {
    let Some(recurring) = account.as_ref().and_then(|a| a.recurring_orders.get(&run.recurring_order_id)) else {
        return Ok(Err("the recurring order is unknown".into()));
    };
    let lines = recurring.lines.clone();
    let mut catalogue = BTreeMap::new();
    let mut short = Vec::new();
    for line in &lines {
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
        account,
        lines: lines.iter().map(|l| OrderLineRequest { sku: l.sku.clone(), quantity: l.quantity }).collect(),
        catalogue,
    };
    let stream = StreamId::order(run.order_id());
    match handler.execute_on::<Order, _>(session, StreamKnown::New, &stream, None, metadata, |_| place.clone()).await {
        Ok(placed) => Ok(Ok(placed)),
        Err(CommandError::Domain(refusal)) => Ok(Err(format!("the order was refused: {refusal}"))),
        Err(other) => Err(other),
    }
}
