//! `/v1/inventory/items`: create SKUs, receive and adjust stock, reserve for orders,
//! release and commit reservations.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, response::Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_schemas::{events::AdjustmentReason, StreamId};

use super::path::ApiPath;
use super::{
    accounts::MoneyBody,
    command::{CommandContext, CommandResponse},
    fields::{Delta, Field, FreeText, Quantity, Sku, Text},
    json::{CommandBody, OptionalCommandBody, Validate},
    problem::{ApiError, FieldProblem},
    AppState,
};
use crate::domain::{InventoryCommand, InventoryItem};

/// How long a reservation holds stock when the request names no expiry.
const DEFAULT_RESERVATION_HOLD: Duration = Duration::from_secs(15 * 60);

pub fn router(keys: &ApiKeys) -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(change_price))
        .routes(routes!(receive))
        .routes(routes!(adjust))
        .routes(routes!(reserve))
        .routes(routes!(release))
        .routes(routes!(commit));
    super::scoped(routes, keys, Scope::InventoryWrite)
}

fn sku_from_path(sku: String) -> Result<String, ApiError> {
    if Sku::fits(&sku) {
        Ok(sku)
    } else {
        Err(ApiError::NotFound(format!(
            "no inventory item {sku:?}: SKUs are upper-case letters, digits, '.', '_', '-'"
        )))
    }
}

/// Runs `command` on the item the path names.
async fn on_item(
    state: &AppState,
    context: CommandContext,
    sku: String,
    raw: &[u8],
    success: StatusCode,
    command: InventoryCommand,
) -> Result<Response, ApiError> {
    let stream = item_stream(&sku_from_path(sku)?)?;
    Ok(context.run::<InventoryItem, _>(state, raw, stream, success, |_| command.clone()).await)
}

/// The item's stream. A SKU that passed validation always names one.
pub(super) fn item_stream(sku: &str) -> Result<StreamId, ApiError> {
    StreamId::inventory_item(sku)
        .map_err(|error| ApiError::Validation(vec![FieldProblem { field: "sku".into(), message: error.to_string() }]))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sku": "HEX-M8-40", "name": "Hex bolt M8x40", "description": "Zinc plated, DIN 933", "unit_price": {"amount_minor": 42, "currency": "EUR"}}))]
pub(crate) struct CreateItem {
    #[schema(inline)]
    pub(crate) sku: Sku,
    #[schema(inline)]
    name: Text<200>,
    #[serde(default)]
    #[schema(inline)]
    description: FreeText<5000>,
    unit_price: MoneyBody,
}

impl CreateItem {
    pub(crate) fn command(&self) -> InventoryCommand {
        InventoryCommand::Create {
            sku: self.sku.as_str().to_string(),
            name: self.name.trimmed(),
            description: self.description.as_str().to_string(),
            unit_price: self.unit_price.money(),
        }
    }
}

impl Validate for CreateItem {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.sku.check("sku", problems);
        self.name.check("name", problems);
        self.description.check("description", problems);
        self.unit_price.check("unit_price", problems);
    }
}

#[utoipa::path(post, path = "/v1/inventory/items", tag = "inventory", request_body = CreateItem,
    responses((status = 201, description = "Created", body = CommandResponse)),
    security(("api_key" = ["inventory:write"])))]
async fn create(
    State(state): State<AppState>,
    context: CommandContext,
    body: CommandBody<CreateItem>,
) -> Result<Response, ApiError> {
    let item = body.value;
    let command = item.command();
    Ok(context
        .run::<InventoryItem, _>(&state, &body.raw, item_stream(item.sku.as_str())?, StatusCode::CREATED, |_| {
            command.clone()
        })
        .await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePrice {
    pub(crate) unit_price: MoneyBody,
    /// Why: a price list's name, a correction.
    #[schema(inline)]
    pub(crate) reason: Option<Text<200>>,
}

impl Validate for ChangePrice {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.unit_price.check("unit_price", problems);
        self.reason.check("reason", problems);
    }
}

impl ChangePrice {
    pub(crate) fn command(&self, by: String) -> InventoryCommand {
        InventoryCommand::ChangePrice {
            unit_price: self.unit_price.money(),
            by,
            reason: self.reason.as_ref().map(Text::trimmed),
        }
    }
}

/// Answers 200 with no events when the price already is this one.
#[utoipa::path(put, path = "/v1/inventory/items/{sku}/price", tag = "inventory", params(("sku" = String, Path, description = "The SKU")), request_body = ChangePrice,
    responses((status = 200, description = "Price changed (or already this one)", body = CommandResponse)),
    security(("api_key" = ["inventory:write"])))]
async fn change_price(
    State(state): State<AppState>,
    ApiPath(sku): ApiPath<String>,
    context: CommandContext,
    body: CommandBody<ChangePrice>,
) -> Result<Response, ApiError> {
    let command = body.value.command(context.principal.actor());
    on_item(&state, context, sku, &body.raw, StatusCode::OK, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quantity": 500, "reference": "PO-2026-0042"}))]
struct Receive {
    #[schema(inline)]
    quantity: Quantity,
    /// A delivery note or purchase order number.
    #[schema(inline)]
    reference: Option<Text<200>>,
}

impl Validate for Receive {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.quantity.check("quantity", problems);
        self.reference.check("reference", problems);
    }
}

#[utoipa::path(post, path = "/v1/inventory/items/{sku}/receipts", tag = "inventory", params(("sku" = String, Path, description = "The SKU")), request_body = Receive,
    responses((status = 201, description = "Stock received", body = CommandResponse)),
    security(("api_key" = ["inventory:write"])))]
async fn receive(
    State(state): State<AppState>,
    ApiPath(sku): ApiPath<String>,
    context: CommandContext,
    body: CommandBody<Receive>,
) -> Result<Response, ApiError> {
    let command = InventoryCommand::Receive {
        quantity: body.value.quantity.get(),
        reference: body.value.reference.as_ref().map(Text::trimmed),
    };
    on_item(&state, context, sku, &body.raw, StatusCode::CREATED, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"delta": -3, "reason": "damaged", "note": "dropped pallet"}))]
struct Adjust {
    #[schema(inline)]
    delta: Delta,
    reason: AdjustmentReason,
    #[schema(inline)]
    note: Option<FreeText<1000>>,
}

impl Validate for Adjust {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.delta.check("delta", problems);
        self.note.check("note", problems);
    }
}

#[utoipa::path(post, path = "/v1/inventory/items/{sku}/adjustments", tag = "inventory", params(("sku" = String, Path, description = "The SKU")), request_body = Adjust,
    responses((status = 201, description = "Stock adjusted; never below what is reserved", body = CommandResponse)),
    security(("api_key" = ["inventory:write"])))]
async fn adjust(
    State(state): State<AppState>,
    ApiPath(sku): ApiPath<String>,
    context: CommandContext,
    body: CommandBody<Adjust>,
) -> Result<Response, ApiError> {
    let command = InventoryCommand::Adjust {
        delta: body.value.delta.get(),
        reason: body.value.reason,
        note: body.value.note.as_ref().map(|note| note.as_str().to_string()),
    };
    on_item(&state, context, sku, &body.raw, StatusCode::CREATED, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Reserve {
    /// Chosen by the client to make retries safe; generated when absent.
    reservation_id: Option<Uuid>,
    order_id: Uuid,
    #[schema(inline)]
    quantity: Quantity,
    /// Defaults to 15 minutes from now.
    expires_at: Option<DateTime<Utc>>,
}

impl Validate for Reserve {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.quantity.check("quantity", problems);
    }
}

#[utoipa::path(post, path = "/v1/inventory/items/{sku}/reservations", tag = "inventory", params(("sku" = String, Path, description = "The SKU")), request_body = Reserve,
    responses((status = 201, description = "Decided: the event is StockReserved, or ReservationRejected when available stock is short", body = CommandResponse)),
    security(("api_key" = ["inventory:write"])))]
async fn reserve(
    State(state): State<AppState>,
    ApiPath(sku): ApiPath<String>,
    context: CommandContext,
    body: CommandBody<Reserve>,
) -> Result<Response, ApiError> {
    let request = body.value;
    let reservation_id = request.reservation_id.unwrap_or_else(Uuid::now_v7);
    let now = Utc::now();
    let expires_at = request.expires_at.unwrap_or(now + DEFAULT_RESERVATION_HOLD);
    let command = InventoryCommand::Reserve {
        reservation_id,
        order_id: request.order_id,
        quantity: request.quantity.get(),
        expires_at,
        now,
    };
    on_item(&state, context, sku, &body.raw, StatusCode::CREATED, command).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Release {
    #[schema(inline)]
    reason: Option<Text<1000>>,
}

impl Validate for Release {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.reason.check("reason", problems);
    }
}

#[utoipa::path(post, path = "/v1/inventory/items/{sku}/reservations/{id}/release", tag = "inventory", params(("sku" = String, Path, description = "The SKU"), ("id" = Uuid, Path, description = "The reservation id")), request_body = Option<Release>,
    responses((status = 200, description = "Released: the stock is available again", body = CommandResponse)),
    security(("api_key" = ["inventory:write"])))]
async fn release(
    State(state): State<AppState>,
    ApiPath((sku, reservation_id)): ApiPath<(String, Uuid)>,
    context: CommandContext,
    body: OptionalCommandBody<Release>,
) -> Result<Response, ApiError> {
    let command = InventoryCommand::Release { reservation_id, reason: body.value.reason.as_ref().map(Text::trimmed) };
    on_item(&state, context, sku, &body.raw, StatusCode::OK, command).await
}

#[utoipa::path(post, path = "/v1/inventory/items/{sku}/reservations/{id}/commit", tag = "inventory", params(("sku" = String, Path, description = "The SKU"), ("id" = Uuid, Path, description = "The reservation id")),
    responses((status = 200, description = "Committed: the reserved stock has left", body = CommandResponse)),
    security(("api_key" = ["inventory:write"])))]
async fn commit(
    State(state): State<AppState>,
    ApiPath((sku, reservation_id)): ApiPath<(String, Uuid)>,
    context: CommandContext,
) -> Result<Response, ApiError> {
    let command = InventoryCommand::Commit { reservation_id };
    on_item(&state, context, sku, &[], StatusCode::OK, command).await
}
