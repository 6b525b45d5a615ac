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
    json::{check_text, problem, CommandBody, OptionalCommandBody, Validate},
    problem::{ApiError, FieldProblem},
    AppState,
};
use crate::domain::{InventoryCommand, InventoryItem};

/// How long a reservation holds stock when the request names no expiry.
const DEFAULT_RESERVATION_HOLD: Duration = Duration::from_secs(15 * 60);
const MAX_QUANTITY: i64 = 1_000_000_000;

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

/// SKUs as the event contract defines them: upper-case letters, digits, `.`, `_`, `-`.
fn valid_sku(sku: &str) -> bool {
    (1..=64).contains(&sku.len())
        && sku
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_uppercase() || b.is_ascii_digit() || (i > 0 && matches!(b, b'.' | b'_' | b'-')))
}

fn sku_from_path(sku: String) -> Result<String, ApiError> {
    if valid_sku(&sku) {
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

fn check_quantity(field: &str, quantity: i64, problems: &mut Vec<FieldProblem>) {
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        problem(problems, field, format!("must be between 1 and {MAX_QUANTITY}"));
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateItem {
    pub(crate) sku: String,
    name: String,
    #[serde(default)]
    description: String,
    unit_price: MoneyBody,
}

impl CreateItem {
    pub(crate) fn command(&self) -> InventoryCommand {
        InventoryCommand::Create {
            sku: self.sku.clone(),
            name: self.name.trim().to_string(),
            description: self.description.clone(),
            unit_price: self.unit_price.money(),
        }
    }
}

impl Validate for CreateItem {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        if !valid_sku(&self.sku) {
            problem(
                problems,
                "sku",
                "must be 1 to 64 upper-case letters, digits, '.', '_' or '-', starting with a letter or digit",
            );
        }
        check_text(problems, "name", &self.name, 200);
        if self.description.chars().count() > 5000 {
            problem(problems, "description", "must be at most 5000 characters");
        }
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
        .run::<InventoryItem, _>(&state, &body.raw, item_stream(&item.sku)?, StatusCode::CREATED, |_| command.clone())
        .await)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePrice {
    pub(crate) unit_price: MoneyBody,
    /// Why: a price list's name, a correction.
    pub(crate) reason: Option<String>,
}

impl Validate for ChangePrice {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.unit_price.check("unit_price", problems);
        if let Some(reason) = &self.reason {
            check_text(problems, "reason", reason, 200);
        }
    }
}

impl ChangePrice {
    pub(crate) fn command(&self, by: String) -> InventoryCommand {
        InventoryCommand::ChangePrice {
            unit_price: self.unit_price.money(),
            by,
            reason: self.reason.as_ref().map(|r| r.trim().to_string()),
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
struct Receive {
    quantity: i64,
    reference: Option<String>,
}

impl Validate for Receive {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        check_quantity("quantity", self.quantity, problems);
        if let Some(reference) = &self.reference {
            check_text(problems, "reference", reference, 200);
        }
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
    let command = InventoryCommand::Receive { quantity: body.value.quantity, reference: body.value.reference.clone() };
    on_item(&state, context, sku, &body.raw, StatusCode::CREATED, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Adjust {
    delta: i64,
    reason: AdjustmentReason,
    note: Option<String>,
}

impl Validate for Adjust {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        if self.delta == 0 || self.delta.abs() > MAX_QUANTITY {
            problem(problems, "delta", format!("must be non-zero and at most {MAX_QUANTITY} either way"));
        }
        if let Some(note) = &self.note {
            if note.chars().count() > 1000 {
                problem(problems, "note", "must be at most 1000 characters");
            }
        }
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
    let command =
        InventoryCommand::Adjust { delta: body.value.delta, reason: body.value.reason, note: body.value.note.clone() };
    on_item(&state, context, sku, &body.raw, StatusCode::CREATED, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Reserve {
    /// Chosen by the client to make retries safe; generated when absent.
    reservation_id: Option<Uuid>,
    order_id: Uuid,
    quantity: i64,
    /// Defaults to 15 minutes from now.
    expires_at: Option<DateTime<Utc>>,
}

impl Validate for Reserve {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        check_quantity("quantity", self.quantity, problems);
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
        quantity: request.quantity,
        expires_at,
        now,
    };
    on_item(&state, context, sku, &body.raw, StatusCode::CREATED, command).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Release {
    reason: Option<String>,
}

impl Validate for Release {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        if let Some(reason) = &self.reason {
            check_text(problems, "reason", reason, 1000);
        }
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
    let command = InventoryCommand::Release { reservation_id, reason: body.value.reason.clone() };
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
