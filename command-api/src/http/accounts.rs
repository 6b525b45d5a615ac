//! `/v1/accounts`: register, and change the credit limit and approval threshold.
//! Staff actions (approve, reject, suspend, reinstate) arrive with authentication,
//! since the acting staff member is the authenticated principal.

use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_schemas::{events::Money, StreamId};

use super::path::ApiPath;
use super::{
    command::{CommandContext, CommandResponse},
    fields::{Currency, Email, Field, MinorUnits, Text},
    json::{CommandBody, Validate},
    problem::FieldProblem,
    AppState,
};
use crate::domain::{Account, AccountCommand};

pub fn router(keys: &ApiKeys) -> OpenApiRouter<AppState> {
    let customer = OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(change_credit_limit))
        .routes(routes!(change_approval_threshold));
    // Approving, rejecting, suspending and reinstating accounts is staff work.
    let staff = OpenApiRouter::new()
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(suspend))
        .routes(routes!(reinstate));
    super::scoped(customer, keys, Scope::AccountsWrite).merge(super::scoped(staff, keys, Scope::Admin))
}

/// A staff decision's reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "duplicate registration"}))]
pub struct Reason {
    #[schema(inline)]
    pub reason: Text<1000>,
}

impl Validate for Reason {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.reason.check("reason", problems);
    }
}

#[utoipa::path(post, path = "/v1/accounts/{id}/approve", tag = "accounts", params(("id" = Uuid, Path, description = "The account id")),
    responses((status = 200, description = "Approved: the account may place orders", body = CommandResponse)),
    security(("api_key" = ["admin"])))]
async fn approve(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>, context: CommandContext) -> Response {
    let command = AccountCommand::Approve { by: context.principal.actor() };
    on_account(&state, context, id, &[], command).await
}

#[utoipa::path(post, path = "/v1/accounts/{id}/reinstate", tag = "accounts", params(("id" = Uuid, Path, description = "The account id")),
    responses((status = 200, description = "Reinstated", body = CommandResponse)),
    security(("api_key" = ["admin"])))]
async fn reinstate(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>, context: CommandContext) -> Response {
    let command = AccountCommand::Reinstate { by: context.principal.actor() };
    on_account(&state, context, id, &[], command).await
}

#[utoipa::path(post, path = "/v1/accounts/{id}/reject", tag = "accounts", params(("id" = Uuid, Path, description = "The account id")), request_body = Reason,
    responses((status = 200, description = "Rejected", body = CommandResponse)),
    security(("api_key" = ["admin"])))]
async fn reject(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<Reason>,
) -> Response {
    let command = AccountCommand::Reject { by: context.principal.actor(), reason: body.value.reason.trimmed() };
    on_account(&state, context, id, &body.raw, command).await
}

#[utoipa::path(post, path = "/v1/accounts/{id}/suspend", tag = "accounts", params(("id" = Uuid, Path, description = "The account id")), request_body = Reason,
    responses((status = 200, description = "Suspended: no new orders until reinstated", body = CommandResponse)),
    security(("api_key" = ["admin"])))]
async fn suspend(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<Reason>,
) -> Response {
    let command = AccountCommand::Suspend { by: context.principal.actor(), reason: body.value.reason.trimmed() };
    on_account(&state, context, id, &body.raw, command).await
}

/// Runs `command` on account `id`; 200 with the events it appended.
async fn on_account(
    state: &AppState,
    context: CommandContext,
    id: Uuid,
    raw: &[u8],
    command: AccountCommand,
) -> Response {
    context.run::<Account, _>(state, raw, StreamId::account(id), StatusCode::OK, |_| command.clone()).await
}

/// Money as clients send it: integer minor units and an ISO 4217 code.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(as = Money)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    #[schema(inline)]
    pub amount_minor: MinorUnits,
    #[schema(inline)]
    pub currency: Currency,
}

impl Field for MoneyBody {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        self.amount_minor.check(&format!("{field}.amount_minor"), problems);
        self.currency.check(&format!("{field}.currency"), problems);
    }
}

impl MoneyBody {
    pub fn money(&self) -> Money {
        Money::new(self.amount_minor.get(), self.currency.as_str())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme Fasteners GmbH", "email": "buyer@acme.example", "credit_limit": {"amount_minor": 5_000_000, "currency": "EUR"}, "approval_threshold": {"amount_minor": 1_000_000, "currency": "EUR"}}))]
pub(crate) struct RegisterAccount {
    #[schema(inline)]
    name: Text<200>,
    #[schema(inline)]
    email: Email,
    credit_limit: MoneyBody,
    approval_threshold: MoneyBody,
}

impl Validate for RegisterAccount {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.name.check("name", problems);
        self.email.check("email", problems);
        self.credit_limit.check("credit_limit", problems);
        self.approval_threshold.check("approval_threshold", problems);
    }
}

impl RegisterAccount {
    pub(crate) fn command(&self, account_id: Uuid) -> AccountCommand {
        AccountCommand::Register {
            account_id,
            name: self.name.trimmed(),
            email: self.email.as_str().to_string(),
            credit_limit: self.credit_limit.money(),
            approval_threshold: self.approval_threshold.money(),
        }
    }
}

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = RegisterAccount,
    responses((status = 201, description = "Registered, pending staff approval; the stream id names the new account", body = CommandResponse)),
    security(("api_key" = ["accounts:write"])))]
async fn register(
    State(state): State<AppState>,
    context: CommandContext,
    body: CommandBody<RegisterAccount>,
) -> Response {
    let account_id = Uuid::now_v7();
    let request = body.value;
    context
        .run_new::<Account, _>(&state, &body.raw, StreamId::account(account_id), |_| request.command(account_id))
        .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeCreditLimit {
    credit_limit: MoneyBody,
}

impl Validate for ChangeCreditLimit {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.credit_limit.check("credit_limit", problems);
    }
}

#[utoipa::path(put, path = "/v1/accounts/{id}/credit-limit", tag = "accounts", params(("id" = Uuid, Path, description = "The account id")), request_body = ChangeCreditLimit,
    responses((status = 200, description = "Changed", body = CommandResponse)),
    security(("api_key" = ["accounts:write"])))]
async fn change_credit_limit(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<ChangeCreditLimit>,
) -> Response {
    let command = AccountCommand::ChangeCreditLimit { credit_limit: body.value.credit_limit.money() };
    on_account(&state, context, id, &body.raw, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeApprovalThreshold {
    approval_threshold: MoneyBody,
}

impl Validate for ChangeApprovalThreshold {
    fn validate(&self, problems: &mut Vec<FieldProblem>) {
        self.approval_threshold.check("approval_threshold", problems);
    }
}

#[utoipa::path(put, path = "/v1/accounts/{id}/approval-threshold", tag = "accounts", params(("id" = Uuid, Path, description = "The account id")), request_body = ChangeApprovalThreshold,
    responses((status = 200, description = "Changed: orders above it wait for staff approval", body = CommandResponse)),
    security(("api_key" = ["accounts:write"])))]
async fn change_approval_threshold(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    context: CommandContext,
    body: CommandBody<ChangeApprovalThreshold>,
) -> Response {
    let command = AccountCommand::ChangeApprovalThreshold { approval_threshold: body.value.approval_threshold.money() };
    on_account(&state, context, id, &body.raw, command).await
}
