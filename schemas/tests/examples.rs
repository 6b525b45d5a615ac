//! Every schema gets valid and invalid examples, and the validator must classify each
//! one correctly. Valid examples are built from the Rust types, which also proves the
//! types and the schema files agree.

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use uuid::Uuid;
use vectis_schemas::{
    events::*,
    topics::{self, TOPICS},
    upcast, SchemaCatalog, SchemaViolation,
};

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, "EUR")
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_a5b2_0000_7000_8000_0000_0000_0000 + n)
}

/// One valid, current-version example per event type.
fn valid_current_examples() -> Vec<(&'static str, u32, Value)> {
    let account = id(1);
    let order = id(2);
    let reservation = id(3);
    let when = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).single().expect("valid date");
    let sku = "BOLT-M8.ZINC_100".to_string();
    let events: Vec<(&'static str, u32, Value)> = [
        AccountEvent::from(AccountRegistered {
            account_id: account,
            name: "Acme Fasteners GmbH".into(),
            email: "buyer@acme.example".into(),
            credit_limit: eur(5_000_000),
            approval_threshold: eur(1_000_000),
        }),
        AccountApproved { account_id: account, approved_by: "staff:ines".into() }.into(),
        AccountRejected { account_id: account, rejected_by: "staff:ines".into(), reason: "no VAT id".into() }.into(),
        AccountSuspended { account_id: account, suspended_by: "staff:ines".into(), reason: "overdue invoices".into() }
            .into(),
        AccountReinstated { account_id: account, reinstated_by: "staff:ines".into() }.into(),
        CreditLimitChanged { account_id: account, previous_credit_limit: eur(5_000_000), credit_limit: eur(0) }.into(),
        ApprovalThresholdChanged {
            account_id: account,
            previous_approval_threshold: eur(1_000_000),
            approval_threshold: eur(250_000),
        }
        .into(),
        RecurringOrderScheduled {
            account_id: account,
            recurring_order_id: id(4),
            lines: vec![RecurringLine { sku: sku.clone(), quantity: 200 }],
            starts_at: when,
            interval_seconds: 7 * 24 * 3600,
            ends_at: Some(when + chrono::Duration::days(365)),
            max_runs: Some(52),
            scheduled_by: "key:buyer".into(),
        }
        .into(),
        RecurringOrderPaused { account_id: account, recurring_order_id: id(4), paused_by: "key:buyer".into() }.into(),
        RecurringOrderResumed {
            account_id: account,
            recurring_order_id: id(4),
            resumed_by: "key:buyer".into(),
            next_run: 3,
        }
        .into(),
        RecurringOrderCancelled { account_id: account, recurring_order_id: id(4), cancelled_by: "key:buyer".into() }
            .into(),
        RecurringOrderRunPlaced {
            account_id: account,
            recurring_order_id: id(4),
            run: 1,
            scheduled_for: when,
            order_id: order,
        }
        .into(),
        RecurringOrderRunSkipped {
            account_id: account,
            recurring_order_id: id(4),
            run: 2,
            scheduled_for: when,
            reason: "the account is suspended".into(),
        }
        .into(),
    ]
    .into_iter()
    .map(|e| (e.event_type(), e.schema_version(), e.to_data()))
    .chain(
        [
            InventoryEvent::from(ItemCreated {
                sku: sku.clone(),
                name: "M8 bolt, zinc".into(),
                description: String::new(),
                unit_price: eur(42),
            }),
            ItemPriceChanged {
                sku: sku.clone(),
                previous_unit_price: eur(42),
                unit_price: eur(45),
                changed_by: "staff:pricing".into(),
                reason: Some("price list 2027".into()),
            }
            .into(),
            StockReceived { sku: sku.clone(), quantity: 100, reference: Some("PO-77".into()) }.into(),
            StockReceived { sku: sku.clone(), quantity: 1, reference: None }.into(),
            StockAdjusted { sku: sku.clone(), delta: -2, reason: AdjustmentReason::Damaged, note: None }.into(),
            StockReserved {
                sku: sku.clone(),
                reservation_id: reservation,
                order_id: order,
                quantity: 5,
                expires_at: when,
            }
            .into(),
            ReservationRejected {
                sku: sku.clone(),
                reservation_id: reservation,
                order_id: order,
                quantity: 500,
                available: 98,
                reason: "insufficient stock".into(),
            }
            .into(),
            ReservationReleased {
                sku: sku.clone(),
                reservation_id: reservation,
                order_id: order,
                quantity: 5,
                reason: None,
            }
            .into(),
            ReservationExpired {
                sku: sku.clone(),
                reservation_id: reservation,
                order_id: order,
                quantity: 5,
                expired_at: when,
            }
            .into(),
            ReservationCommitted { sku: sku.clone(), reservation_id: reservation, order_id: order, quantity: 5 }.into(),
        ]
        .into_iter()
        .map(|e| (e.event_type(), e.schema_version(), e.to_data())),
    )
    .chain(
        [
            OrderEvent::from(OrderPlaced {
                order_id: order,
                account_id: account,
                currency: "EUR".into(),
                lines: vec![OrderLine { sku: sku.clone(), quantity: 5, unit_price: eur(42), line_total: eur(210) }],
                total: eur(210),
            }),
            OrderApprovalRequested {
                order_id: order,
                account_id: account,
                total: eur(210),
                approval_threshold: eur(100),
            }
            .into(),
            OrderApproved { order_id: order, approved_by: "staff:ines".into() }.into(),
            OrderRejected { order_id: order, rejected_by: "staff:ines".into(), reason: "too large".into() }.into(),
            OrderStockHeld {
                order_id: order,
                reservations: vec![HeldLine { sku: sku.clone(), reservation_id: Uuid::from_u128(7), quantity: 5 }],
                expires_at: chrono::Utc::now(),
            }
            .into(),
            OrderConfirmed { order_id: order }.into(),
            OrderCancelled { order_id: order, reason: "customer request".into() }.into(),
            OrderShipped { order_id: order, carrier: "DHL".into(), tracking_number: "JD0123".into() }.into(),
            OrderDelivered { order_id: order }.into(),
        ]
        .into_iter()
        .map(|e| (e.event_type(), e.schema_version(), e.to_data())),
    )
    .collect();
    events
}

fn all_valid_examples() -> Vec<(&'static str, u32, Value)> {
    let mut examples = valid_current_examples();
    examples.push(("StockAdjusted", 1, json!({"sku": "BOLT-M8", "delta": 7, "reason": "found behind shelf"})));
    examples
}

fn catalog() -> SchemaCatalog {
    SchemaCatalog::embedded().expect("embedded schemas compile")
}

#[test]
fn examples_cover_every_schema_file() {
    let mut covered: Vec<(&str, u32)> = all_valid_examples().iter().map(|(t, v, _)| (*t, *v)).collect();
    covered.sort();
    covered.dedup();
    assert_eq!(covered.len(), catalog().len(), "every schema file needs a valid example");
    for spec in TOPICS.iter().flat_map(|t| t.event_types.iter()) {
        assert!(covered.contains(&(spec.name, spec.current_version)), "no example for {}", spec.name);
    }
}

#[test]
fn valid_examples_pass_and_decode_back_into_their_type() {
    let catalog = catalog();
    for (event_type, version, data) in valid_current_examples() {
        catalog
            .validate(event_type, version, &data)
            .unwrap_or_else(|e| panic!("{event_type} v{version} should be valid: {e}"));
        let topic = topics::topic_for_event_type(event_type).expect("registered").name;
        let decoded_back = match topic {
            "vectis.accounts" => AccountEvent::from_data(event_type, data.clone()).map(|e| e.to_data()),
            "vectis.inventory" => InventoryEvent::from_data(event_type, data.clone()).map(|e| e.to_data()),
            _ => OrderEvent::from_data(event_type, data.clone()).map(|e| e.to_data()),
        };
        assert_eq!(decoded_back.expect("decodes"), data, "{event_type} round-trips");
    }
}

#[test]
fn dropping_any_required_field_or_adding_an_unknown_one_is_invalid() {
    let catalog = catalog();
    for (event_type, version, data) in all_valid_examples() {
        let fields = data.as_object().expect("object").clone();
        for key in fields.keys() {
            let mut missing = fields.clone();
            missing.remove(key);
            let optional = matches!(
                (event_type, key.as_str()),
                ("StockReceived", "reference")
                    | ("ItemPriceChanged", "reason")
                    | ("ReservationReleased", "reason")
                    | ("StockAdjusted", "note")
                    | ("RecurringOrderScheduled", "ends_at" | "max_runs")
            );
            let outcome = catalog.validate(event_type, version, &Value::Object(missing));
            assert_eq!(outcome.is_ok(), optional, "{event_type} v{version} without {key}");
        }
        let mut extra = fields.clone();
        extra.insert("unexpected".into(), json!(1));
        assert!(
            matches!(
                catalog.validate(event_type, version, &Value::Object(extra)),
                Err(SchemaViolation::Invalid { .. })
            ),
            "{event_type} v{version} with an unknown field"
        );
        assert!(catalog.validate(event_type, version, &json!([])).is_err(), "{event_type}: not an object");
    }
}

/// Bad values a buggy producer could plausibly write, with the field the violation
/// must point at.
#[test]
fn wrong_values_are_invalid_and_the_error_names_the_field() {
    let catalog = catalog();
    let base = |event_type: &str| {
        valid_current_examples()
            .into_iter()
            .find(|(t, _, _)| *t == event_type)
            .map(|(_, v, d)| (v, d))
            .expect("example exists")
    };
    let cases: Vec<(&str, &str, Value)> = vec![
        ("AccountRegistered", "/account_id", json!("not-a-uuid")),
        ("AccountRegistered", "/email", json!("no-at-sign")),
        ("AccountRegistered", "/name", json!("")),
        ("AccountRegistered", "/credit_limit/currency", json!("eur")),
        ("AccountRegistered", "/credit_limit/amount_minor", json!(-1)),
        ("AccountRegistered", "/credit_limit/amount_minor", json!(12.5)),
        ("ItemCreated", "/sku", json!("lower case")),
        ("StockReceived", "/quantity", json!(0)),
        ("StockAdjusted", "/delta", json!(0)),
        ("StockAdjusted", "/reason", json!("because")),
        ("StockReserved", "/expires_at", json!("tomorrow")),
        ("OrderPlaced", "/lines", json!([])),
        ("OrderPlaced", "/lines/0/quantity", json!(-5)),
        ("OrderShipped", "/carrier", json!(17)),
    ];
    for (event_type, pointer, bad) in cases {
        let (version, mut data) = base(event_type);
        *data.pointer_mut(pointer).unwrap_or_else(|| panic!("{event_type} has {pointer}")) = bad.clone();
        match catalog.validate(event_type, version, &data) {
            Err(SchemaViolation::Invalid { errors, .. }) => assert!(
                errors.iter().any(|e| e.path == pointer),
                "{event_type}: error should point at {pointer}, got {errors:?}"
            ),
            other => panic!("{event_type} with {pointer} = {bad} should be invalid, got {other:?}"),
        }
    }
}

#[test]
fn unknown_event_types_and_versions_are_refused() {
    let catalog = catalog();
    assert!(matches!(
        catalog.validate("OrderTeleported", 1, &json!({})),
        Err(SchemaViolation::UnknownEventType { .. })
    ));
    assert!(matches!(catalog.validate("OrderConfirmed", 7, &json!({})), Err(SchemaViolation::UnknownEventType { .. })));
}

#[test]
fn upcast_v1_stock_adjustment_validates_against_v2_and_decodes() {
    let catalog = catalog();
    let v1 = json!({"sku": "BOLT-M8", "delta": -4, "reason": "Damaged"});
    catalog.validate("StockAdjusted", 1, &v1).expect("valid v1");
    let (version, v2) = upcast::upcast_to_current("StockAdjusted", 1, v1).expect("upcasts");
    catalog.validate("StockAdjusted", version, &v2).expect("upcast result is valid v2");
    let decoded = InventoryEvent::from_data("StockAdjusted", v2).expect("decodes as the current type");
    assert_eq!(
        decoded,
        InventoryEvent::StockAdjusted(StockAdjusted {
            sku: "BOLT-M8".into(),
            delta: -4,
            reason: AdjustmentReason::Damaged,
            note: None
        })
    );
}

fn copy_schemas_to(dir: &std::path::Path) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    for topic in std::fs::read_dir(&source).expect("events dir") {
        let topic = topic.expect("entry").path();
        let target = dir.join(topic.file_name().expect("name"));
        std::fs::create_dir_all(&target).expect("mkdir");
        for file in std::fs::read_dir(&topic).expect("topic dir") {
            let file = file.expect("entry").path();
            std::fs::copy(&file, target.join(file.file_name().expect("name"))).expect("copy");
        }
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vectis-schemas-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

#[test]
fn a_schema_that_does_not_compile_is_an_error_naming_its_file() {
    let dir = temp_dir("broken");
    copy_schemas_to(&dir);
    let broken = dir.join("orders/OrderShipped.v1.json");
    std::fs::write(&broken, r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "objekt"}"#)
        .expect("write");
    let err = SchemaCatalog::from_dir(&dir).expect_err("must not load").to_string();
    assert!(err.contains("OrderShipped.v1.json"), "{err}");
    assert!(err.contains("does not compile"), "{err}");

    std::fs::write(&broken, "{ not json").expect("write");
    let err = SchemaCatalog::from_dir(&dir).expect_err("must not load").to_string();
    assert!(err.contains("OrderShipped.v1.json") && err.contains("not valid JSON"), "{err}");

    std::fs::remove_file(&broken).expect("remove");
    let err = SchemaCatalog::from_dir(&dir).expect_err("must not load").to_string();
    assert!(err.contains("OrderShipped.v1.json") && err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn schemas_on_disk_load_like_the_embedded_ones() {
    let dir = temp_dir("intact");
    copy_schemas_to(&dir);
    let from_disk = SchemaCatalog::from_dir(&dir).expect("loads");
    assert_eq!(from_disk.len(), catalog().len());
    std::fs::remove_dir_all(&dir).ok();
}
