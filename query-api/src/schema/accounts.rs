//! Accounts: `account(id)`, `accounts(filter, first, after)`, and an account's orders.

use async_graphql::{dataloader::DataLoader, ComplexObject, Context, Error, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vectis_read_side::status::AccountStatus;

use super::{
    loaders::{AccountOrders, AccountOrdersKey},
    orders::{Order, ORDERS_LIST},
    recurring_orders::RecurringOrder,
    Money, StatusFilter,
};
use crate::{
    db::ReadDb,
    pagination::{self, Page},
};

#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
#[graphql(complex)]
pub struct Account {
    #[graphql(name = "id")]
    pub account_id: Uuid,
    pub name: String,
    pub email: String,
    #[graphql(skip)]
    pub status: AccountStatus,
    #[graphql(skip)]
    pub credit_limit_minor: i64,
    #[graphql(skip)]
    pub credit_limit_currency: String,
    #[graphql(skip)]
    pub approval_threshold_minor: i64,
    #[graphql(skip)]
    pub approval_threshold_currency: String,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The account stream's version this row reflects.
    pub version: i64,
}

impl Account {
    pub const SELECT: &'static str =
        "SELECT account_id, name, email, status, credit_limit_minor, credit_limit_currency,
                                             approval_threshold_minor, approval_threshold_currency, registered_at,
                                             updated_at, version FROM read.accounts";
}

#[ComplexObject]
impl Account {
    /// pending_approval, approved, rejected, suspended.
    async fn status(&self) -> &'static str {
        self.status.as_str()
    }

    async fn credit_limit(&self) -> Money {
        Money::new(self.credit_limit_minor, &self.credit_limit_currency)
    }

    /// Orders above it wait for a staff approval.
    async fn approval_threshold(&self) -> Money {
        Money::new(self.approval_threshold_minor, &self.approval_threshold_currency)
    }

    /// The account's recurring orders, oldest first.
    async fn recurring_orders(&self, ctx: &Context<'_>) -> Result<Vec<RecurringOrder>, Error> {
        RecurringOrder::of_account(ctx.data_unchecked::<ReadDb>(), self.account_id).await
    }

    /// The account's orders, newest first.
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    async fn orders(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<Page<Order>, Error> {
        let limit = pagination::page_size(first)?;
        let after: Option<(DateTime<Utc>, Uuid)> = pagination::decode(ORDERS_LIST, after.as_deref())?;
        let key = AccountOrdersKey { account_id: self.account_id, limit, after };
        let (rows, total) = ctx.data_unchecked::<DataLoader<AccountOrders>>().load_one(key).await?.unwrap_or_default();
        Ok(pagination::page(ORDERS_LIST, rows, limit, total, after.is_some(), |o| (o.placed_at, o.order_id)))
    }
}

#[derive(InputObject, Debug, Clone, Default)]
pub struct AccountFilter {
    pub status: Option<String>,
}

#[derive(Default)]
pub struct AccountQueries;

#[Object]
impl AccountQueries {
    async fn account(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Account>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        db.counted(
            sqlx::query_as(&format!("{} WHERE account_id = $1", Account::SELECT)).bind(id).fetch_optional(&db.pool),
        )
        .await
    }

    /// Oldest registration first (account ids are time-ordered).
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        filter: Option<AccountFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page<Account>, Error> {
        const LIST: &str = "accounts";
        let db = ctx.data_unchecked::<ReadDb>();
        let limit = pagination::page_size(first)?;
        let position: Option<Uuid> = pagination::decode(LIST, after.as_deref())?;
        let status = match StatusFilter::<AccountStatus>::parse(filter.and_then(|f| f.status).as_deref()) {
            StatusFilter::Any => None,
            StatusFilter::Only(status) => Some(status),
            StatusFilter::Unmatchable => {
                return Ok(pagination::page(LIST, Vec::new(), limit, 0, position.is_some(), |a: &Account| a.account_id))
            }
        };
        let rows: Vec<Account> = db
            .counted(
                sqlx::query_as(&format!(
                    "{} WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR account_id > $2)
                      ORDER BY account_id LIMIT $3",
                    Account::SELECT
                ))
                .bind(status.map(AccountStatus::as_str))
                .bind(position)
                .bind(limit + 1)
                .fetch_all(&db.pool),
            )
            .await?;
        let total: i64 = db
            .counted(
                sqlx::query_scalar("SELECT count(*) FROM read.accounts WHERE ($1::text IS NULL OR status = $1)")
                    .bind(status.map(AccountStatus::as_str))
                    .fetch_one(&db.pool),
            )
            .await?;
        Ok(pagination::page(LIST, rows, limit, total, position.is_some(), |a| a.account_id))
    }
}
