//! `read.accounts`: one row per account — status, name, email, credit limit,
//! approval threshold, and the stream version it reflects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;
use vectis_consumer::event::{DomainEvent, ProjectedEvent};
use vectis_read_side::{catalog, status::AccountStatus};
use vectis_schemas::events::AccountEvent;

pub struct Accounts;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AccountRow {
    pub account_id: Uuid,
    pub name: String,
    pub email: String,
    pub status: AccountStatus,
    pub credit_limit_minor: i64,
    pub credit_limit_currency: String,
    pub approval_threshold_minor: i64,
    pub approval_threshold_currency: String,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

const DDL: &str = "
CREATE TABLE IF NOT EXISTS {schema}.accounts (
    account_id                  uuid        PRIMARY KEY,
    name                        text        NOT NULL,
    email                       text        NOT NULL,
    status                      text        NOT NULL,
    credit_limit_minor          bigint      NOT NULL,
    credit_limit_currency       text        NOT NULL,
    approval_threshold_minor    bigint      NOT NULL,
    approval_threshold_currency text        NOT NULL,
    registered_at               timestamptz NOT NULL,
    updated_at                  timestamptz NOT NULL,
    version                     bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_status ON {schema}.accounts (status, account_id);
";

/// The status an account is in after `event`, when the event sets one.
pub fn status_after(event: &AccountEvent) -> Option<AccountStatus> {
    match event {
        AccountEvent::AccountRegistered(_) => Some(AccountStatus::PendingApproval),
        AccountEvent::AccountApproved(_) | AccountEvent::AccountReinstated(_) => Some(AccountStatus::Approved),
        AccountEvent::AccountRejected(_) => Some(AccountStatus::Rejected),
        AccountEvent::AccountSuspended(_) => Some(AccountStatus::Suspended),
        _ => None,
    }
}

/// Folds one event into the row it concerns (`None` before registration).
pub fn evolve(row: Option<AccountRow>, event: &AccountEvent, version: i64, at: DateTime<Utc>) -> Option<AccountRow> {
    if let AccountEvent::AccountRegistered(e) = event {
        return Some(AccountRow {
            account_id: e.account_id,
            name: e.name.clone(),
            email: e.email.clone(),
            status: AccountStatus::PendingApproval,
            credit_limit_minor: e.credit_limit.amount_minor,
            credit_limit_currency: e.credit_limit.currency.clone(),
            approval_threshold_minor: e.approval_threshold.amount_minor,
            approval_threshold_currency: e.approval_threshold.currency.clone(),
            registered_at: at,
            updated_at: at,
            version,
        });
    }
    let mut row = row?;
    match event {
        AccountEvent::AccountRegistered(_)
        | AccountEvent::AccountApproved(_)
        | AccountEvent::AccountReinstated(_)
        | AccountEvent::AccountRejected(_)
        | AccountEvent::AccountSuspended(_) => {}
        AccountEvent::CreditLimitChanged(e) => {
            row.credit_limit_minor = e.credit_limit.amount_minor;
            row.credit_limit_currency = e.credit_limit.currency.clone();
        }
        AccountEvent::ApprovalThresholdChanged(e) => {
            row.approval_threshold_minor = e.approval_threshold.amount_minor;
            row.approval_threshold_currency = e.approval_threshold.currency.clone();
        }
        // `read.recurring_orders` shows them; the row still reflects the stream's version.
        _ if event.recurring_order_id().is_some() => {
            row.version = version;
            return Some(row);
        }
        _ => {}
    }
    if let Some(status) = status_after(event) {
        row.status = status;
    }
    row.updated_at = at;
    row.version = version;
    Some(row)
}

async fn apply(conn: &mut PgConnection, schema: &str, events: &[ProjectedEvent]) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = events.iter().filter_map(|e| e.stream_id.uuid()).collect();
    let existing: Vec<AccountRow> =
        sqlx::query_as(&format!("SELECT * FROM {schema}.accounts WHERE account_id = ANY($1)"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut rows: HashMap<Uuid, Option<AccountRow>> = existing.into_iter().map(|r| (r.account_id, Some(r))).collect();
    for event in events {
        let (DomainEvent::Account(account_event), Some(id)) = (&event.event, event.stream_id.uuid()) else {
            continue;
        };
        let row = rows.remove(&id).flatten();
        rows.insert(id, evolve(row, account_event, event.stream_version, event.occurred_at));
    }
    // Every row here was read for, or created by, an event of the batch.
    let changed: Vec<AccountRow> = rows.into_values().flatten().collect();
    if changed.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&AccountRow) -> String| changed.iter().map(f).collect::<Vec<_>>();
    sqlx::query(&format!(
        "INSERT INTO {schema}.accounts
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                              $7::bigint[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::bigint[])
         ON CONFLICT (account_id) DO UPDATE SET
            name = EXCLUDED.name, email = EXCLUDED.email, status = EXCLUDED.status,
            credit_limit_minor = EXCLUDED.credit_limit_minor, credit_limit_currency = EXCLUDED.credit_limit_currency,
            approval_threshold_minor = EXCLUDED.approval_threshold_minor,
            approval_threshold_currency = EXCLUDED.approval_threshold_currency,
            updated_at = EXCLUDED.updated_at, version = EXCLUDED.version"
    ))
    .bind(changed.iter().map(|r| r.account_id).collect::<Vec<_>>())
    .bind(column(|r| r.name.clone()))
    .bind(column(|r| r.email.clone()))
    .bind(changed.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.credit_limit_minor).collect::<Vec<_>>())
    .bind(column(|r| r.credit_limit_currency.clone()))
    .bind(changed.iter().map(|r| r.approval_threshold_minor).collect::<Vec<_>>())
    .bind(column(|r| r.approval_threshold_currency.clone()))
    .bind(changed.iter().map(|r| r.registered_at).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(changed.iter().map(|r| r.version).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

read_model!(Accounts, catalog::ACCOUNTS, DDL, &["accounts"]);
