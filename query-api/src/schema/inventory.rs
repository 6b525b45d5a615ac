//! Inventory: `inventoryItem(sku)`, `inventoryItems(filter, first, after)`, and an
//! item's reservations.

use async_graphql::{dataloader::DataLoader, ComplexObject, Context, Error, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vectis_read_side::status::ReservationStatus;

use super::{loaders::Reservations, Money};
use crate::{
    db::ReadDb,
    pagination::{self, Page},
};

/// An item is low on stock at or below this many available units.
pub const LOW_STOCK_AT: i64 = 10;

#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
#[graphql(complex)]
pub struct InventoryItem {
    pub sku: String,
    pub name: String,
    pub description: String,
    #[graphql(skip)]
    pub unit_price_minor: i64,
    #[graphql(skip)]
    pub currency: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// On hand minus reserved.
    pub available: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The item stream's version this row reflects.
    pub version: i64,
}

impl InventoryItem {
    pub const SELECT: &'static str =
        "SELECT sku, name, description, unit_price_minor, currency, on_hand, reserved, available,
                                         created_at, updated_at, version FROM read.inventory_items";
}

#[ComplexObject]
impl InventoryItem {
    async fn unit_price(&self) -> Money {
        Money::new(self.unit_price_minor, &self.currency)
    }

    /// Newest first: held, committed, released, expired and rejected ones.
    async fn reservations(&self, ctx: &Context<'_>) -> Result<Vec<Reservation>, Error> {
        Ok(ctx.data_unchecked::<DataLoader<Reservations>>().load_one(self.sku.clone()).await?.unwrap_or_default())
    }
}

#[derive(SimpleObject, sqlx::FromRow, Debug, Clone)]
#[graphql(complex)]
pub struct Reservation {
    #[graphql(name = "id")]
    pub reservation_id: Uuid,
    pub sku: String,
    pub order_id: Uuid,
    pub quantity: i64,
    #[graphql(skip)]
    pub status: ReservationStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl Reservation {
    /// held, committed, released, expired, rejected.
    async fn status(&self) -> &'static str {
        self.status.as_str()
    }
}

#[derive(InputObject, Debug, Clone, Default)]
pub struct InventoryFilter {
    /// Only items with at most 10 available (true), or more (false).
    pub low_stock: Option<bool>,
}

#[derive(Default)]
pub struct InventoryQueries;

#[Object]
impl InventoryQueries {
    async fn inventory_item(&self, ctx: &Context<'_>, sku: String) -> Result<Option<InventoryItem>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        db.counted(
            sqlx::query_as(&format!("{} WHERE sku = $1", InventoryItem::SELECT)).bind(sku).fetch_optional(&db.pool),
        )
        .await
    }

    /// By SKU.
    #[graphql(complexity = "pagination::complexity(first, child_complexity)")]
    async fn inventory_items(
        &self,
        ctx: &Context<'_>,
        filter: Option<InventoryFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Page<InventoryItem>, Error> {
        const LIST: &str = "inventoryItems";
        let db = ctx.data_unchecked::<ReadDb>();
        let low_stock = filter.and_then(|f| f.low_stock);
        let limit = pagination::page_size(first)?;
        let position: Option<String> = pagination::decode(LIST, after.as_deref())?;
        let condition = "($1::boolean IS NULL OR (available <= $2) = $1)";
        let rows: Vec<InventoryItem> = db
            .counted(
                sqlx::query_as(&format!(
                    "{} WHERE {condition} AND ($3::text IS NULL OR sku > $3) ORDER BY sku LIMIT $4",
                    InventoryItem::SELECT
                ))
                .bind(low_stock)
                .bind(LOW_STOCK_AT)
                .bind(position.as_deref())
                .bind(limit + 1)
                .fetch_all(&db.pool),
            )
            .await?;
        let total: i64 = db
            .counted(
                sqlx::query_scalar(&format!("SELECT count(*) FROM read.inventory_items WHERE {condition}"))
                    .bind(low_stock)
                    .bind(LOW_STOCK_AT)
                    .fetch_one(&db.pool),
            )
            .await?;
        Ok(pagination::page(LIST, rows, limit, total, position.is_some(), |i| i.sku.clone()))
    }
}
