//! What each kind of import makes of a row: the request body its endpoint takes,
//! checked by the same rules, and the same command. So an import can never do what a
//! single request could not.
//!
//! | kind | a row is | fields (`*` required) |
//! |---|---|---|
//! | `items` | `POST /v1/inventory/items` | `sku`*, `name`*, `description`, `unit_price_minor`*, `currency`* |
//! | `prices` | `PUT /v1/inventory/items/{sku}/price` | `sku`*, `unit_price_minor`*, `currency`*, `reason` |
//! | `accounts` | `POST /v1/accounts` | `name`*, `email`*, `currency`*, `credit_limit_minor`*, `approval_threshold_minor`* |
//!
//! Amounts are whole minor units (cents: `1250` is 12.50). An account's id is derived
//! from the file's hash and the row's number, so a row can only ever register one.

use serde_json::{json, Map, Value};
use uuid::Uuid;
use vectis_runtime::auth::Scope;
use vectis_schemas::StreamId;

use crate::{
    domain::{AccountCommand, InventoryCommand},
    http::{
        accounts::RegisterAccount,
        inventory::{ChangePrice, CreateItem},
        json::valid_from_value,
        problem::FieldProblem,
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportKind {
    Items,
    Prices,
    Accounts,
}

/// A row's command and the stream it runs on.
#[derive(Debug, Clone)]
pub(crate) enum RowCommand {
    Inventory {
        stream: StreamId,
        command: InventoryCommand,
    },
    /// A registration under an id no one else can have chosen.
    NewAccount {
        stream: StreamId,
        command: AccountCommand,
    },
}

impl RowCommand {
    pub fn stream(&self) -> &StreamId {
        match self {
            RowCommand::Inventory { stream, .. } | RowCommand::NewAccount { stream, .. } => stream,
        }
    }
}

impl ImportKind {
    pub fn parse(name: &str) -> Option<ImportKind> {
        match name {
            "items" => Some(ImportKind::Items),
            "prices" => Some(ImportKind::Prices),
            "accounts" => Some(ImportKind::Accounts),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ImportKind::Items => "items",
            ImportKind::Prices => "prices",
            ImportKind::Accounts => "accounts",
        }
    }

    /// The fields of a row, and whether each is required.
    pub fn fields(&self) -> &'static [(&'static str, bool)] {
        match self {
            ImportKind::Items => {
                &[("sku", true), ("name", true), ("description", false), ("unit_price_minor", true), ("currency", true)]
            }
            ImportKind::Prices => &[("sku", true), ("unit_price_minor", true), ("currency", true), ("reason", false)],
            ImportKind::Accounts => &[
                ("name", true),
                ("email", true),
                ("currency", true),
                ("credit_limit_minor", true),
                ("approval_threshold_minor", true),
            ],
        }
    }

    /// The scope a key needs to run this import: that of the endpoint a row stands for.
    pub fn scope(&self) -> Scope {
        match self {
            ImportKind::Items | ImportKind::Prices => Scope::InventoryWrite,
            ImportKind::Accounts => Scope::AccountsWrite,
        }
    }

    /// Required fields no column of a CSV header provides.
    pub fn missing_columns(&self, columns: &[String]) -> Vec<&'static str> {
        self.fields()
            .iter()
            .filter(|(field, required)| *required && !columns.iter().any(|c| c == field))
            .map(|(field, _)| *field)
            .collect()
    }

    /// Columns no field of this kind claims: ignored.
    pub fn ignored_columns<'a>(&self, columns: &'a [String]) -> Vec<&'a str> {
        columns.iter().filter(|c| !self.fields().iter().any(|(f, _)| f == c)).map(String::as_str).collect()
    }

    /// The command a row stands for, or why the row is refused (the same words a
    /// request with this body would get).
    pub(crate) fn command(
        &self,
        fields: &Map<String, Value>,
        file_sha256: &str,
        row: u64,
        actor: &str,
    ) -> Result<RowCommand, String> {
        let mut problems = Vec::new();
        for (field, required) in self.fields() {
            if *required && !fields.contains_key(*field) {
                problems.push(format!("{field}: missing"));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let text = |field: &str| fields.get(field).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        let money = |field: &str| -> Result<Value, String> {
            Ok(json!({ "amount_minor": minor_units(field, fields.get(field))?, "currency": text("currency") }))
        };
        match self {
            ImportKind::Items => {
                let mut body =
                    json!({ "sku": text("sku"), "name": text("name"), "unit_price": money("unit_price_minor")? });
                if let Some(description) = text("description") {
                    body["description"] = Value::String(description);
                }
                let item: CreateItem = valid(
                    body,
                    &[("unit_price.amount_minor", "unit_price_minor"), ("unit_price.currency", "currency")],
                )?;
                let stream = StreamId::inventory_item(item.sku.as_str()).map_err(|e| format!("sku: {e}"))?;
                Ok(RowCommand::Inventory { stream, command: item.command() })
            }
            ImportKind::Prices => {
                let sku = text("sku").unwrap_or_default();
                let mut body = json!({ "unit_price": money("unit_price_minor")? });
                if let Some(reason) = text("reason") {
                    body["reason"] = Value::String(reason);
                }
                let change: ChangePrice = valid(
                    body,
                    &[("unit_price.amount_minor", "unit_price_minor"), ("unit_price.currency", "currency")],
                )?;
                let stream = StreamId::inventory_item(&sku)
                    .map_err(|_| format!("sku: {sku:?} is no SKU (upper-case letters, digits, '.', '_', '-')"))?;
                Ok(RowCommand::Inventory { stream, command: change.command(actor.to_string()) })
            }
            ImportKind::Accounts => {
                let body = json!({
                    "name": text("name"),
                    "email": text("email"),
                    "credit_limit": money("credit_limit_minor")?,
                    "approval_threshold": money("approval_threshold_minor")?,
                });
                let account: RegisterAccount = valid(
                    body,
                    &[
                        ("credit_limit.amount_minor", "credit_limit_minor"),
                        ("approval_threshold.amount_minor", "approval_threshold_minor"),
                        ("credit_limit.currency", "currency"),
                        ("approval_threshold.currency", "currency"),
                    ],
                )?;
                let account_id = row_account_id(file_sha256, row);
                Ok(RowCommand::NewAccount {
                    stream: StreamId::account(account_id),
                    command: account.command(account_id),
                })
            }
        }
    }
}

/// The body a row makes, checked as the endpoint checks it; problems are named by the
/// row's fields (`unit_price.amount_minor` is `unit_price_minor`).
fn valid<T: serde::de::DeserializeOwned + crate::http::json::Validate>(
    body: Value,
    renames: &[(&str, &str)],
) -> Result<T, String> {
    valid_from_value::<T>(body).map_err(|problems: Vec<FieldProblem>| {
        let mut reasons: Vec<String> = problems
            .into_iter()
            .map(|p| {
                let field = renames.iter().find(|(from, _)| *from == p.field).map_or(p.field.as_str(), |(_, to)| to);
                format!("{field}: {}", p.message)
            })
            .collect();
        reasons.dedup();
        reasons.join("; ")
    })
}

/// A whole number of minor units, from a JSON number or a CSV cell.
fn minor_units(field: &str, value: Option<&Value>) -> Result<i64, String> {
    let parsed = match value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        let shown = value.map_or_else(String::new, |v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        format!("{field}: must be a whole number of minor units (1250 for 12.50), not {shown:?}")
    })
}

/// The account a row registers: the same for the same file and row, whoever runs it.
pub(crate) fn row_account_id(file_sha256: &str, row: u64) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(file_sha256.as_bytes()).chain_update(row.to_be_bytes()).finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect()
    }

    #[test]
    fn a_row_meets_its_endpoints_rules_in_its_own_field_names() {
        let price = fields(&[("sku", "BOLT-M8"), ("unit_price_minor", "1399"), ("currency", "EUR")]);
        let command = ImportKind::Prices.command(&price, "abc", 2, "import:x").expect("valid");
        assert_eq!(command.stream().as_str(), "inventory-BOLT-M8");
        let bad = fields(&[("sku", "BOLT-M8"), ("unit_price_minor", "13.99"), ("currency", "EUR")]);
        let reason = ImportKind::Prices.command(&bad, "abc", 2, "import:x").expect_err("refused");
        assert!(reason.starts_with("unit_price_minor: must be a whole number"), "{reason}");
        let bad = fields(&[("sku", "BOLT-M8"), ("unit_price_minor", "-5"), ("currency", "euro")]);
        let reason = ImportKind::Prices.command(&bad, "abc", 2, "import:x").expect_err("refused");
        assert_eq!(reason, "unit_price_minor: must not be negative; currency: must be an ISO 4217 code such as EUR");
        let reason = ImportKind::Items.command(&fields(&[("sku", "x")]), "abc", 2, "a").expect_err("refused");
        assert_eq!(reason, "name: missing; unit_price_minor: missing; currency: missing");
    }

    #[test]
    fn an_accounts_row_always_names_the_same_account() {
        assert_eq!(row_account_id("abc", 7), row_account_id("abc", 7));
        assert_ne!(row_account_id("abc", 7), row_account_id("abc", 8));
        assert_ne!(row_account_id("abc", 7), row_account_id("abd", 7));
    }

    #[test]
    fn a_csv_header_missing_a_required_field_is_named() {
        let columns = vec!["sku".to_string(), "price".to_string()];
        assert_eq!(ImportKind::Prices.missing_columns(&columns), ["unit_price_minor", "currency"]);
        assert_eq!(ImportKind::Prices.ignored_columns(&columns), ["price"]);
    }
}
