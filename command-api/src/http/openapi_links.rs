//! OpenAPI links: from each operation that creates something (an account, an item, a
//! reservation, an order, a recurring order, an import) to the operations on what it
//! created, with the expressions that carry its id across. A client reads them to see
//! what comes next; a stateful fuzzer follows them to reach the business rules.

use serde_json::{json, Value};
use utoipa::openapi::{link::LinkBuilder, OpenApi, RefOr};

/// Where a created resource's id sits in the creating answer.
const ACCOUNT: &str = "$response.body#/events/0/data/account_id";
const SKU: &str = "$response.body#/events/0/data/sku";
const RESERVATION: &str = "$response.body#/events/0/data/reservation_id";
const ORDER: &str = "$response.body#/events/0/data/order_id";
const RECURRING_ORDER: &str = "$response.body#/events/0/data/recurring_order_id";
const IMPORT: &str = "$response.body#/import_id";
/// The same resource as the source operation's path names.
const SAME_ACCOUNT: &str = "$request.path.id";
const SAME_SKU: &str = "$request.path.sku";
const SAME_ORDER: &str = "$request.path.id";

/// A link: its name, the target operation id, path parameters, and a body to merge
/// into the generated one.
struct Next {
    name: &'static str,
    target: &'static str,
    parameters: &'static [(&'static str, &'static str)],
    body: Option<fn() -> Value>,
}

const fn to(name: &'static str, target: &'static str, parameters: &'static [(&'static str, &'static str)]) -> Next {
    Next { name, target, parameters, body: None }
}

fn order_for_account_in_response() -> Value {
    json!({ "account_id": ACCOUNT })
}

fn order_for_account_in_path() -> Value {
    json!({ "account_id": SAME_ACCOUNT })
}

fn order_of_item_in_path() -> Value {
    json!({ "lines": [{ "sku": SAME_SKU, "quantity": 1 }] })
}

/// (operation id, status) → the links of that answer.
fn table() -> Vec<(&'static str, &'static str, Vec<Next>)> {
    let account = &[("id", ACCOUNT)];
    let same_account = &[("id", SAME_ACCOUNT)];
    let item = &[("sku", SKU)];
    let same_item = &[("sku", SAME_SKU)];
    let order = &[("id", ORDER)];
    let same_order = &[("id", SAME_ORDER)];
    vec![
        (
            "accounts_register",
            "201",
            vec![
                to("Approve", "accounts_approve", account),
                to("Reject", "accounts_reject", account),
                to("Suspend", "accounts_suspend", account),
                to("ChangeCreditLimit", "accounts_change_credit_limit", account),
                to("ChangeApprovalThreshold", "accounts_change_approval_threshold", account),
                to("ScheduleRecurringOrder", "recurring_orders_schedule", account),
                Next { body: Some(order_for_account_in_response), ..to("PlaceOrder", "orders_place", &[]) },
            ],
        ),
        (
            "accounts_approve",
            "200",
            vec![
                Next { body: Some(order_for_account_in_path), ..to("PlaceOrder", "orders_place", &[]) },
                to("ScheduleRecurringOrder", "recurring_orders_schedule", same_account),
                to("Suspend", "accounts_suspend", same_account),
            ],
        ),
        ("accounts_suspend", "200", vec![to("Reinstate", "accounts_reinstate", same_account)]),
        (
            "inventory_create",
            "201",
            vec![
                to("Receive", "inventory_receive", item),
                to("Adjust", "inventory_adjust", item),
                to("ChangePrice", "inventory_change_price", item),
                to("Reserve", "inventory_reserve", item),
            ],
        ),
        (
            "inventory_receive",
            "201",
            vec![
                to("Reserve", "inventory_reserve", same_item),
                Next { body: Some(order_of_item_in_path), ..to("PlaceOrder", "orders_place", &[]) },
            ],
        ),
        (
            "inventory_reserve",
            "201",
            vec![
                to("Release", "inventory_release", &[("sku", SAME_SKU), ("id", RESERVATION)]),
                to("Commit", "inventory_commit", &[("sku", SAME_SKU), ("id", RESERVATION)]),
            ],
        ),
        (
            "orders_place",
            "201",
            vec![
                to("Approve", "orders_approve", order),
                to("Reject", "orders_reject", order),
                to("Confirm", "orders_confirm", order),
                to("Cancel", "orders_cancel", order),
            ],
        ),
        ("orders_approve", "200", vec![to("Confirm", "orders_confirm", same_order)]),
        (
            "orders_confirm",
            "200",
            vec![to("Ship", "orders_ship", same_order), to("Cancel", "orders_cancel", same_order)],
        ),
        ("orders_ship", "200", vec![to("Deliver", "orders_deliver", same_order)]),
        (
            "recurring_orders_schedule",
            "201",
            vec![
                to("Pause", "recurring_orders_pause", &[("id", SAME_ACCOUNT), ("recurring_order_id", RECURRING_ORDER)]),
                to(
                    "Cancel",
                    "recurring_orders_cancel",
                    &[("id", SAME_ACCOUNT), ("recurring_order_id", RECURRING_ORDER)],
                ),
            ],
        ),
        (
            "recurring_orders_pause",
            "200",
            vec![to(
                "Resume",
                "recurring_orders_resume",
                &[("id", SAME_ACCOUNT), ("recurring_order_id", "$request.path.recurring_order_id")],
            )],
        ),
        ("imports_start_import", "202", vec![to("Status", "imports_import_status", &[("id", IMPORT)])]),
    ]
}

/// Adds the links to the answers they leave from. An operation id or status the
/// table names but the document lacks is a programming error, caught by the tests.
pub fn add(doc: &mut OpenApi) {
    let table = table();
    for item in doc.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post, &mut item.put].into_iter().flatten() {
            let Some(id) = operation.operation_id.clone() else { continue };
            for (_, status, links) in table.iter().filter(|(source, ..)| *source == id) {
                let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) else { continue };
                for next in links {
                    let mut link = LinkBuilder::new().operation_id(next.target);
                    for (name, expression) in next.parameters {
                        link = link.parameter(*name, *expression);
                    }
                    link = link.request_body(next.body.map(|body| body()));
                    response.links.insert(next.name.into(), RefOr::T(link.build()));
                }
            }
        }
    }
}
