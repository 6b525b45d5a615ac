//! `vectis import` as an operator runs it: the real binary, a real file, the test's
//! own database; killed with SIGKILL halfway and run again.

use std::{path::PathBuf, process::Command, time::Duration};

use sqlx::PgPool;
use vectis_event_store::kafka::KafkaSettings;
use vectis_schemas::TopicNaming;
use vectis_test_support::{
    cli::{self, CliOutput},
    database_url, eventually,
};

async fn vectis(pool: &PgPool, args: &[&str]) -> CliOutput {
    // Imports never touch the broker (the relay publishes what they append).
    let kafka = KafkaSettings::new("127.0.0.1:1".to_string(), TopicNaming::with_prefix(String::new()));
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, &kafka, &[], args).await
}

fn scratch(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vectis-import-{}-{}", std::process::id(), uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("file");
    path
}

fn items_csv(rows: usize) -> String {
    let mut csv = String::from("SKU,Name,Description,List Price,Currency,Supplier\n");
    for i in 0..rows {
        csv.push_str(&format!("IMP-{i:06},\"Bolt, M{i}\",,{},EUR,acme\n", 100 + i));
    }
    csv
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_items_file_becomes_one_creation_per_row_bad_rows_are_reported_and_a_rerun_appends_nothing(pool: PgPool) {
    let mut csv = items_csv(2_500);
    csv.push_str("bad sku,Nut,,10,EUR,acme\n");
    csv.push_str("NUT-1,Nut,,-5,EUR,acme\n");
    csv.push_str("IMP-000007,Again,,10,EUR,acme\n");
    csv.push_str("NUT-2,Nut,,12.50,EUR,acme\n");
    let file = scratch("catalogue.csv", &csv);
    let path = file.to_str().expect("utf-8");
    let args = ["import", "items", path, "--map", "List Price=unit_price_minor", "--batch-rows", "1000"];

    let first = vectis(&pool, &args).await;
    assert_eq!(first.code, 2, "rows were refused: {}{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("2500 rows done, 4 rejected, 0 remaining"), "{}", first.stdout);
    assert!(first.stderr.contains("column \"supplier\" is ignored"), "{}", first.stderr);
    assert!(first.stderr.contains("2,504/2,504 100%"), "the progress bar ends full: {}", first.stderr);
    let created = scalar(&pool, "SELECT count(*) FROM events WHERE event_type = 'ItemCreated'").await;
    assert_eq!(created, 2_500);
    let import_id: uuid::Uuid =
        sqlx::query_scalar("SELECT import_id FROM imports").fetch_one(&pool).await.expect("one");
    let correlated: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE metadata->>'correlation_id' = $1")
        .bind(import_id.to_string())
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(correlated, 2_500, "every event carries the import as its correlation id");
    let price: i64 = scalar(
        &pool,
        "SELECT (data->'unit_price'->>'amount_minor')::bigint FROM events WHERE stream_id = 'inventory-IMP-000042'",
    )
    .await;
    assert_eq!(price, 142, "the mapped column is the price");

    let report = std::fs::read_to_string(format!("{path}.rejected.csv")).expect("the report");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "row,reason,record");
    assert!(lines[1].starts_with("2501,\"sku: must be 1 to 64 upper-case letters"), "{report}");
    assert!(lines[2].starts_with("2502,unit_price_minor: must not be negative"), "{report}");
    assert!(lines[3].starts_with("2503,inventory item IMP-000007 already exists"), "{report}");
    assert!(lines[4].starts_with("2504,\"unit_price_minor: must be a whole number of minor units"), "{report}");

    let again = vectis(&pool, &args).await;
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("was imported already"), "{}", again.stderr);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM events").await, 2_500, "a re-run appends nothing");

    let other_mapping = vectis(
        &pool,
        &["import", "items", path, "--map", "List Price=unit_price_minor", "--map", "Supplier=description"],
    )
    .await;
    assert_ne!(other_mapping.code, 0);
    assert!(other_mapping.stderr.contains("with the same mapping"), "{}", other_mapping.stderr);
    let unmapped =
        vectis(&pool, &["import", "items", scratch("x.csv", "SKU,Name,Price\nA,B,1\n").to_str().expect("utf-8")]).await;
    assert_ne!(unmapped.code, 0);
    assert!(unmapped.stderr.contains("no column for unit_price_minor, currency"), "{}", unmapped.stderr);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_price_list_changes_prices_as_its_actor_and_the_same_price_changes_nothing(pool: PgPool) {
    let items = scratch("items.csv", &items_csv(3));
    assert_eq!(
        vectis(&pool, &["import", "items", items.to_str().expect("utf-8"), "--map", "list_price=unit_price_minor"])
            .await
            .code,
        0
    );
    let prices = scratch(
        "prices.ndjson",
        "{\"sku\":\"IMP-000000\",\"unit_price_minor\":999,\"currency\":\"EUR\",\"reason\":\"list 2027\"}\n\
         {\"sku\":\"IMP-000001\",\"unit_price_minor\":101,\"currency\":\"EUR\"}\n\
         {\"sku\":\"NOPE-1\",\"unit_price_minor\":5,\"currency\":\"EUR\"}\n",
    );
    let run = vectis(&pool, &["import", "prices", prices.to_str().expect("utf-8")]).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("2 rows done, 1 rejected"), "{}", run.stdout);
    let changes: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT stream_id, data FROM events WHERE event_type = 'ItemPriceChanged'")
            .fetch_all(&pool)
            .await
            .expect("changes");
    assert_eq!(changes.len(), 1, "101 was already IMP-000001's price: {changes:?}");
    let (stream, data) = &changes[0];
    assert_eq!(stream, "inventory-IMP-000000");
    assert_eq!(data["previous_unit_price"]["amount_minor"], 100);
    assert_eq!(data["unit_price"]["amount_minor"], 999);
    assert_eq!(data["reason"], "list 2027");
    assert!(data["changed_by"].as_str().is_some_and(|by| by.starts_with("cli:")), "{data}");
    let report = std::fs::read_to_string(format!("{}.rejected.csv", prices.display())).expect("report");
    assert!(report.contains("3,no inventory item with this SKU"), "{report}");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn batches_written_together_keep_file_order_and_every_character_of_a_row(pool: PgPool) {
    // Text COPY treats backslash, tab and newline specially: each must arrive as written.
    let name = "Back\\slash \"quoted\" tab\there ünïcødé ✓";
    let description = "line one\nline two\r\n\\N is not null";
    let items = scratch(
        "odd.ndjson",
        &format!(
            "{}\n",
            serde_json::json!({"sku": "ODD-1", "name": name, "description": description,
                               "unit_price_minor": 100, "currency": "EUR"})
        ),
    );
    let created = vectis(&pool, &["import", "items", items.to_str().expect("utf-8")]).await;
    assert_eq!(created.code, 0, "{}{}", created.stdout, created.stderr);
    let data: serde_json::Value = sqlx::query_scalar("SELECT data FROM events WHERE stream_id = 'inventory-ODD-1'")
        .fetch_one(&pool)
        .await
        .expect("one");
    assert_eq!(data["name"], name);
    assert_eq!(data["description"], description);

    // Twelve price changes of one SKU, two rows a batch: batches that share a stream
    // are written one after the other, so the last row's price is the price.
    let mut prices = String::from("sku,unit_price_minor,currency\n");
    for price in 1..=12 {
        prices.push_str(&format!("ODD-1,{},EUR\n", price * 10 + 1));
        prices.push_str(&format!("OTHER-{price},5,EUR\n"));
    }
    let prices = scratch("prices.csv", &prices);
    let run = vectis(&pool, &["import", "prices", prices.to_str().expect("utf-8"), "--batch-rows", "2"]).await;
    assert_eq!(run.code, 2, "the OTHER rows name no item: {}{}", run.stdout, run.stderr);
    let report = std::fs::read_to_string(format!("{}.rejected.csv", prices.display())).expect("report");
    assert!(run.stdout.contains("12 rows done, 12 rejected"), "{}{report}", run.stdout);
    let changes: Vec<i64> = sqlx::query_scalar(
        "SELECT (data->'unit_price'->>'amount_minor')::bigint FROM events
          WHERE stream_id = 'inventory-ODD-1' AND event_type = 'ItemPriceChanged' ORDER BY stream_version",
    )
    .fetch_all(&pool)
    .await
    .expect("changes");
    assert_eq!(changes, (1..=12).map(|p| p * 10 + 1).collect::<Vec<i64>>(), "in file order");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_import_killed_halfway_resumes_where_it_stopped_and_appends_nothing_twice(pool: PgPool) {
    let rows = 20_000;
    let file = scratch("big.csv", &items_csv(rows));
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.expect("name");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vectis"))
        .args([
            "import",
            "items",
            file.to_str().expect("utf-8"),
            "--map",
            "List Price=unit_price_minor",
            "--batch-rows",
            "50",
        ])
        .env("DATABASE_URL", database_url(&database).expect("url"))
        .env("LOG_LEVEL", "warn")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let pool_ref = &pool;
    let through_at_kill = eventually(Duration::from_secs(60), "the import halfway", || async move {
        let through: Option<i64> = sqlx::query_scalar("SELECT rows_through FROM imports")
            .fetch_optional(pool_ref)
            .await
            .map_err(|e| e.to_string())?;
        match through {
            Some(n) if n >= 2_000 => Ok(n),
            other => Err(format!("rows_through {other:?}")),
        }
    })
    .await;
    // SIGKILL: no chance to finish a batch or mark anything.
    child.kill().expect("killed");
    child.wait().expect("reaped");
    let status: String = sqlx::query_scalar("SELECT status FROM imports").fetch_one(&pool).await.expect("status");
    let appended = scalar(&pool, "SELECT count(*) FROM events").await;
    assert!(appended < rows as i64, "killed before the end: {appended} events, through {through_at_kill}");
    assert_eq!(status, "running");

    let resumed =
        vectis(&pool, &["import", "items", file.to_str().expect("utf-8"), "--map", "List Price=unit_price_minor"])
            .await;
    assert_eq!(resumed.code, 0, "{}{}", resumed.stdout, resumed.stderr);
    assert!(resumed.stderr.contains("resuming import"), "{}", resumed.stderr);
    assert!(resumed.stdout.contains(&format!("{rows} rows done, 0 rejected, 0 remaining")), "{}", resumed.stdout);
    assert_eq!(scalar(&pool, "SELECT count(*) FROM events").await, rows as i64);
    assert_eq!(scalar(&pool, "SELECT count(DISTINCT stream_id) FROM events").await, rows as i64);
    assert_eq!(scalar(&pool, "SELECT max(version) FROM streams").await, 1, "no stream got a second creation");
}
