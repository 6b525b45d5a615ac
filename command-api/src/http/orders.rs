//! `/v1/orders`: place an order, then confirm, cancel, ship and deliver it. Staff
//! approval (approve, reject) arrives with authentication.

use std::collections::BTreeMap;

use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_schemas::StreamId;

use super::path::ApiPath;
use super::{
    accounts::Reason,
    command::{CommandContext, CommandResponse},
    fields::{Entry, Field, NonEmpty, Quantity, Sku, Text},
    json::{CommandBody, Validate},
    problem::{ApiError, FieldProblem},
    AppState,
};
use crate::domain::{Account, InventoryItem, Order, OrderCommand, OrderLineRequest};

pub fn router(keys: &ApiKeys) -> OpenApiRouter<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(place))
        .routes(routes!(confirm))
        .routes(routes!(cancel))
        .routes(routes!(ship))
        .routes(routes!(deliver));
    // Orders above an account's approval threshold are approved by staff.
    let staff = OpenApiRouter::new().routes(routes!(approve)).routes(routes!(reject));
    super::scoped(routes, keys, Scope::OrdersWrite).merge(super::scoped(staff, keys, Scope::Admin))
}

#[utoipa::path(post, path = "/v1/orders/{id}/approve", tag = "orders", params(("id" = Uuid, Path, description = "The order id")),
    responses((status = 200, description = "Approved: the order may be confirmed", body = CommandResponse)),
    security(("api_key" = ["admin"])))]
async fn approve(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>, context: CommandContext) -> Response {
    let by = context.principal.actor();
    transition(&state, context, id, &[], OrderCommand::Approve { by }).await
}

#[utoipa::path(post, path = "/v1/orders/{id}/reject", tag = "orders", params(("id" = Uuid, Path, description = "The order id")), request_body = Reason,
    responses((status = 200, description = "Rejected", body = CommandResponse)),
    security(("api_key" = ["admin"])))]
async fn reject(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<Reason>,
) -> Response {
    let command = OrderCommand::Reject { by: context.principal.actor(), reason: body.value.reason.trimmed() };
    transition(&state, context, id, &body.raw, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Line {
    #[schema(inline)]
    pub sku: Sku,
    #[schema(inline)]
    pub quantity: Quantity,
}

impl Entry for Line {
    fn check_entry(&self, path: &str, problems: &mut Vec<FieldProblem>) {
        self.sku.check(&format!("{path}.sku"), problems);
        self.quantity.check(&format!("{path}.quantity"), problems);
    }
}

/// An order's (or a recurring order's) lines: 1 to 500, each a SKU and a quantity.
pub(super) type Lines = NonEmpty<Line, 500>;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account_id": "0191e8a2-7c3b-7d4e-9f10-2a3b4c5d6e7f", "lines": [{"sku": "HEX-M8-40", "quantity": 200}]}))]
struct PlaceOrder {
    account_id: Uuid,
    lines: Lines,
}

impl Validate for PlaceOrder {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.lines.check("lines", problems);
    }
}

/// Reads the account and every requested SKU, then places the order on them.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = PlaceOrder,
    responses((status = 201, description = "Placed: OrderPlaced, and OrderApprovalRequested when the total is above the account's approval threshold; the stream id names the new order", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn place(
    State(state): State<AppState>,
    context: CommandContext,
    body: CommandBody<PlaceOrder>,
) -> Result<Response, ApiError> {
    let request = body.value;
    let handler = &state.handler;
    // The account and every SKU are independent reads: do them at once.
    let item_streams: Vec<StreamId> =
        request.lines.iter().map(|line| super::inventory::item_stream(line.sku.as_str())).collect::<Result<_, _>>()?;
    let (account, items) = futures::future::join(
        handler.load::<Account>(&StreamId::account(request.account_id)),
        futures::future::try_join_all(item_streams.iter().map(|stream| handler.load::<InventoryItem>(stream))),
    )
    .await;
    let account = account?.state;
    let catalogue: BTreeMap<String, InventoryItem> =
        items?.into_iter().filter_map(|loaded| loaded.state).map(|item| (item.sku.clone(), item)).collect();
    let order_id = Uuid::now_v7();
    let command = OrderCommand::Place {
        order_id,
        account_id: request.account_id,
        account,
        lines: request
            .lines
            .iter()
            .map(|l| OrderLineRequest { sku: l.sku.as_str().to_string(), quantity: l.quantity.get() })
            .collect(),
        catalogue,
    };
    Ok(context.run_new::<Order, _>(&state, &body.raw, StreamId::order(order_id), |_| command.clone()).await)
}

async fn transition(
    state: &AppState,
    context: CommandContext,
    id: Uuid,
    raw: &[u8],
    command: OrderCommand,
) -> Response {
    context.run::<Order, _>(state, raw, StreamId::order(id), StatusCode::OK, |_| command.clone()).await
}

#[utoipa::path(post, path = "/v1/orders/{id}/confirm", tag = "orders", params(("id" = Uuid, Path, description = "The order id")),
    responses((status = 200, description = "Confirmed", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn confirm(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>, context: CommandContext) -> Response {
    transition(&state, context, id, &[], OrderCommand::Confirm).await
}

#[utoipa::path(post, path = "/v1/orders/{id}/deliver", tag = "orders", params(("id" = Uuid, Path, description = "The order id")),
    responses((status = 200, description = "Delivered", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn deliver(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>, context: CommandContext) -> Response {
    transition(&state, context, id, &[], OrderCommand::Deliver).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "ordered twice"}))]
struct Cancel {
    #[schema(inline)]
    reason: Text<1000>,
}

impl Validate for Cancel {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.reason.check("reason", problems);
    }
}

#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", params(("id" = Uuid, Path, description = "The order id")), request_body = Cancel,
    responses((status = 200, description = "Cancelled", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn cancel(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<Cancel>,
) -> Response {
    let reason = body.value.reason.trimmed();
    transition(&state, context, id, &body.raw, OrderCommand::Cancel { reason }).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"carrier": "DHL", "tracking_number": "JD014600006281230021"}))]
struct Ship {
    #[schema(inline)]
    carrier: Text<100>,
    #[schema(inline)]
    tracking_number: Text<100>,
}

impl Validate for Ship {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.carrier.check("carrier", problems);
        self.tracking_number.check("tracking_number", problems);
    }
}

#[utoipa::path(post, path = "/v1/orders/{id}/ship", tag = "orders", params(("id" = Uuid, Path, description = "The order id")), request_body = Ship,
    responses((status = 200, description = "Shipped", body = CommandResponse)),
    security(("api_key" = ["orders:write"])))]
async fn ship(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<Ship>,
) -> Response {
    let command = OrderCommand::Ship {
        carrier: body.value.carrier.trimmed(),
        tracking_number: body.value.tracking_number.trimmed(),
    };
    transition(&state, context, id, &body.raw, command).await
}
