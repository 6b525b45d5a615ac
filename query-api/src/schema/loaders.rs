//! DataLoaders for every relation: the keys a query asks for within one tick are
//! loaded with one statement (`= ANY($1)`), so a page's cost does not grow with it.

use std::collections::HashMap;

use async_graphql::{dataloader::Loader, Error};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    accounts::Account,
    inventory::{InventoryItem, Reservation},
    orders::{Order, OrderLine, StatusChange},
};
use crate::db::ReadDb;

/// Accounts by id.
pub struct Accounts(pub ReadDb);
/// Orders by id (search hits).
pub struct Orders(pub ReadDb);
/// A page of an account's orders, with the account's order count.
pub struct AccountOrders(pub ReadDb);

/// Where a page of orders starts: after this (placed_at, order id), or at the newest.
pub type OrderPosition = Option<(DateTime<Utc>, Uuid)>;

/// One account's page: `limit` + 1 orders after `after` (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountOrdersKey {
    pub account_id: Uuid,
    pub limit: i64,
    pub after: OrderPosition,
}
/// Inventory items by SKU (search hits).
pub struct Items(pub ReadDb);
/// An order's lines, in line order.
pub struct OrderLines(pub ReadDb);
/// An order's status changes, oldest first.
pub struct StatusHistory(pub ReadDb);
/// An item's reservations, newest first.
pub struct Reservations(pub ReadDb);

impl Loader<Uuid> for Accounts {
    type Value = Account;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Account>, Error> {
        let rows: Vec<Account> = self
            .0
            .counted(
                sqlx::query_as(&format!("{} WHERE account_id = ANY($1)", Account::SELECT))
                    .bind(keys)
                    .fetch_all(&self.0.pool),
            )
            .await?;
        Ok(rows.into_iter().map(|a| (a.account_id, a)).collect())
    }
}

impl Loader<Uuid> for Orders {
    type Value = Order;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Order>, Error> {
        let rows: Vec<Order> = self
            .0
            .counted(
                sqlx::query_as(&format!("{} WHERE order_id = ANY($1)", Order::SELECT))
                    .bind(keys)
                    .fetch_all(&self.0.pool),
            )
            .await?;
        Ok(rows.into_iter().map(|o| (o.order_id, o)).collect())
    }
}

impl Loader<AccountOrdersKey> for AccountOrders {
    /// The page's rows (one more than asked when more follow) and the account's total.
    type Value = (Vec<Order>, i64);
    type Error = Error;

    /// One statement per distinct page position asked for (all accounts' first pages
    /// share one), plus one for every account's count.
    async fn load(&self, keys: &[AccountOrdersKey]) -> Result<HashMap<AccountOrdersKey, (Vec<Order>, i64)>, Error> {
        let db = &self.0;
        let accounts: Vec<Uuid> = keys.iter().map(|k| k.account_id).collect();
        let totals: HashMap<Uuid, i64> = db
            .counted(
                sqlx::query_as::<_, (Uuid, i64)>(
                    "SELECT account_id, count(*) FROM read.orders WHERE account_id = ANY($1) GROUP BY account_id",
                )
                .bind(&accounts)
                .fetch_all(&db.pool),
            )
            .await?
            .into_iter()
            .collect();
        let positions: HashMap<(i64, OrderPosition), Vec<Uuid>> = grouped(keys.to_vec(), |k| (k.limit, k.after))
            .into_iter()
            .map(|(p, ks)| (p, ks.iter().map(|k| k.account_id).collect()))
            .collect();
        let mut pages = HashMap::new();
        for ((limit, after), accounts) in positions {
            let cursor = if after.is_some() { "AND (placed_at, order_id) < ($3, $4)" } else { "" };
            let rows: Vec<Order> = db
                .counted(
                    sqlx::query_as(&format!(
                        "SELECT page.* FROM UNNEST($1::uuid[]) AS account(id) CROSS JOIN LATERAL (
                           {} WHERE account_id = account.id {cursor} ORDER BY placed_at DESC, order_id DESC LIMIT $2
                         ) AS page",
                        Order::SELECT
                    ))
                    .bind(&accounts)
                    .bind(limit + 1)
                    .bind(after.map(|a| a.0))
                    .bind(after.map(|a| a.1))
                    .fetch_all(&db.pool),
                )
                .await?;
            let mut by_account = grouped(rows, |o| o.account_id);
            for account_id in accounts {
                let key = AccountOrdersKey { account_id, limit, after };
                let total = totals.get(&account_id).copied().unwrap_or(0);
                pages.insert(key, (by_account.remove(&account_id).unwrap_or_default(), total));
            }
        }
        Ok(pages)
    }
}

impl Loader<String> for Items {
    type Value = InventoryItem;
    type Error = Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, InventoryItem>, Error> {
        let rows: Vec<InventoryItem> = self
            .0
            .counted(
                sqlx::query_as(&format!("{} WHERE sku = ANY($1)", InventoryItem::SELECT))
                    .bind(keys)
                    .fetch_all(&self.0.pool),
            )
            .await?;
        Ok(rows.into_iter().map(|i| (i.sku.clone(), i)).collect())
    }
}

fn grouped<K: std::hash::Hash + Eq, V>(rows: Vec<V>, key: impl Fn(&V) -> K) -> HashMap<K, Vec<V>> {
    let mut groups: HashMap<K, Vec<V>> = HashMap::new();
    for row in rows {
        groups.entry(key(&row)).or_default().push(row);
    }
    groups
}

impl Loader<Uuid> for OrderLines {
    type Value = Vec<OrderLine>;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<OrderLine>>, Error> {
        let rows: Vec<OrderLine> = self
            .0
            .counted(
                sqlx::query_as(
                    "SELECT order_id, line_no, sku, quantity, unit_price_minor, line_total_minor
                       FROM read.order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no",
                )
                .bind(keys)
                .fetch_all(&self.0.pool),
            )
            .await?;
        Ok(grouped(rows, |line| line.order_id))
    }
}

impl Loader<Uuid> for StatusHistory {
    type Value = Vec<StatusChange>;
    type Error = Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<StatusChange>>, Error> {
        let rows: Vec<StatusChange> = self
            .0
            .counted(
                sqlx::query_as(
                    "SELECT order_id, stream_version, status, event_type, occurred_at
                       FROM read.order_status_history WHERE order_id = ANY($1) ORDER BY order_id, stream_version",
                )
                .bind(keys)
                .fetch_all(&self.0.pool),
            )
            .await?;
        Ok(grouped(rows, |change| change.order_id))
    }
}

impl Loader<String> for Reservations {
    type Value = Vec<Reservation>;
    type Error = Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Vec<Reservation>>, Error> {
        let rows: Vec<Reservation> = self
            .0
            .counted(
                sqlx::query_as(
                    "SELECT reservation_id, sku, order_id, quantity, status, expires_at, created_at, updated_at
                       FROM read.inventory_reservations WHERE sku = ANY($1) ORDER BY sku, created_at DESC, reservation_id",
                )
                .bind(keys)
                .fetch_all(&self.0.pool),
            )
            .await?;
        Ok(grouped(rows, |reservation| reservation.sku.clone()))
    }
}
