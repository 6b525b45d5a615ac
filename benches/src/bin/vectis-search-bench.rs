//! Search benchmark: prints figures, asserts nothing.
//!
//! Appends `BENCH_SEARCH_PRODUCTS` (default 100,000) products (created, then stock
//! received) and, for every fifth, an account with one order, through the event store;
//! relays them to fresh topics; then, for each engine available (embedded always,
//! Meilisearch when `MEILI_URL` is set), in a database of its own:
//! * catch-up: each search projector from the earliest offset, events/s and documents
//!   indexed/s (steady rate: first batch to last event);
//! * queries on the products index (`BENCH_SEARCH_QUERIES` per kind, default 500, one
//!   at a time, through the query side's search interface): p50/p99 per kind.
//!
//! Run with `scripts/bench search`.

use std::time::Instant;
use vectis_schemas::StreamId;

use uuid::Uuid;
use vectis_benches::{create_database, drop_database, env_number, fill, projector_catch_up, Figures};
use vectis_event_store::{kafka::KafkaSettings, NewEvent};
use vectis_projectors::search::{
    declaration::{Filter, FilterValue, SearchRequest, Sort},
    metrics::SearchMetrics,
    SearchEngine, SearchSettings,
};
use vectis_schemas::{
    events::{InventoryEvent, ItemCreated, Money, OrderEvent},
    samples,
};
use vectis_test_support::{event_store, fresh_topics};

const KINDS: [&str; 12] = [
    "Hex",
    "Flat",
    "Socket",
    "Wing",
    "Carriage",
    "Lock",
    "Compression",
    "Extension",
    "Torsion",
    "Shoulder",
    "Eye",
    "Tee",
];
const PARTS: [&str; 10] = ["bolt", "nut", "washer", "screw", "spring", "rivet", "pin", "anchor", "clip", "bracket"];
const MATERIALS: [&str; 6] =
    ["Zinc-plated steel", "Stainless steel", "Brass", "Nylon", "Aluminium", "Galvanised steel"];

fn inventory(event: impl Into<InventoryEvent>) -> NewEvent {
    event.into().into()
}

/// One product; every fifth unit also an account with one order.
fn unit_streams(unit: usize) -> Vec<(StreamId, Vec<NewEvent>)> {
    let part = PARTS[unit % PARTS.len()];
    let sku = format!("{}-{unit:06}", part.to_uppercase());
    let size = 3 + unit % 22;
    let created = ItemCreated {
        sku: sku.clone(),
        name: format!("{} {part} M{size}", KINDS[unit / PARTS.len() % KINDS.len()]),
        description: format!("{} {part}, {} mm", MATERIALS[unit % MATERIALS.len()], 10 + unit % 90),
        unit_price: Money::new(5 + (unit as i64 * 37) % 5_000, "EUR"),
    };
    let mut streams = vec![(
        StreamId::inventory_item(&sku).expect("a SKU"),
        vec![inventory(created), inventory(samples::stock_received(&sku, 1 + (unit % 1_000) as i64))],
    )];
    if unit % 5 == 0 {
        let (account_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
        let name = format!("Buyer {unit} {}", KINDS[unit % KINDS.len()]);
        streams.push((StreamId::account(account_id), vec![samples::account_registered(account_id, &name).into()]));
        let placed: OrderEvent = samples::order_placed(order_id, account_id, &sku, 1 + (unit % 7) as i64);
        streams.push((StreamId::order(order_id), vec![placed.into()]));
    }
    streams
}

fn engines() -> Vec<(&'static str, SearchSettings)> {
    let root = std::env::temp_dir().join(format!("vectis-search-bench-{}", Uuid::now_v7().simple()));
    let mut engines = vec![("embedded", SearchSettings::Embedded { root })];
    if let settings @ SearchSettings::Meilisearch { .. } = SearchSettings::from_env() {
        engines.push(("meilisearch", settings));
    }
    engines
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let products = env_number("BENCH_SEARCH_PRODUCTS", 100_000) as usize;
    let queries = env_number("BENCH_SEARCH_QUERIES", 500) as usize;
    let (pool, database) = create_database(20).await?;
    let kafka = fresh_topics().await?;
    println!("# Vectis search benchmark");
    println!("broker {}; topic prefix {}", vectis_test_support::brokers(), kafka.naming.prefix());
    println!("\n## Fill");
    let filled = fill(&pool, &event_store(pool.clone()), &kafka, products, unit_streams).await;
    pool.close().await;
    drop_database(&database).await?;
    filled?;
    if std::env::var("MEILI_URL").map_or(true, |v| v.trim().is_empty()) {
        println!("(MEILI_URL is not set: the embedded engine only)");
    }
    for (name, settings) in engines() {
        let (pool, database) = create_database(20).await?;
        let outcome = run(&pool, &kafka, name, &settings, products, queries).await;
        pool.close().await;
        drop_database(&database).await?;
        if let SearchSettings::Embedded { root } = &settings {
            let _ = std::fs::remove_dir_all(root);
        }
        outcome?;
    }
    Ok(())
}

async fn run(
    pool: &sqlx::PgPool,
    kafka: &KafkaSettings,
    name: &str,
    settings: &SearchSettings,
    products: usize,
    queries: usize,
) -> anyhow::Result<()> {
    let engine = SearchEngine::new(settings, kafka.naming.prefix(), SearchMetrics::default())?;
    println!("\n## {name}: catch-up from the earliest offset");
    println!("| index | events | documents | events/s | documents indexed/s | wall s |");
    println!("|---|---|---|---|---|---|");
    let orders = products.div_ceil(5);
    for projection in vectis_projectors::search::projections(&engine) {
        let index = SearchEngine::index_of(projection.name()).map_or("?", |d| d.name);
        let expected = match index {
            "products" => 2 * products,
            "accounts" => orders,
            _ => 2 * orders,
        };
        let started = Instant::now();
        let catch_up = projector_catch_up(pool, kafka, projection.clone(), expected as i64).await?;
        let wall = started.elapsed();
        let declaration = SearchEngine::index_of(projection.name()).ok_or_else(|| anyhow::anyhow!("not search"))?;
        let documents = engine.document_count(pool, declaration).await?;
        let documents_per_second = catch_up.per_second() * documents as f64 / expected as f64;
        println!(
            "| {index} | {expected} | {documents} | {:.0} | {documents_per_second:.0} | {:.1} |",
            catch_up.per_second(),
            wall.as_secs_f64()
        );
    }

    println!("\n## {name}: queries on {products} products, one at a time (query side: active index lookup + search)");
    println!("| query | hits (total) | p50 ms | p99 ms | queries/s |");
    println!("|---|---|---|---|---|");
    let mut cases: Vec<(&str, SearchRequest)> = vec![
        ("exact word: washer", SearchRequest::new("washer")),
        ("typo: compresion", SearchRequest::new("compresion")),
        ("prefix as typed: tors", SearchRequest::new("tors")),
        ("three words, the last a prefix: hex bolt m1", SearchRequest::new("hex bolt m1")),
    ];
    let mut filtered = SearchRequest::new("steel spring");
    filtered.filters = vec![Filter::Range { field: "available".into(), min: Some(500), max: None }];
    filtered.sort = vec![Sort { field: "unit_price_minor".into(), descending: true }];
    cases.push(("words + range filter + sort: steel spring", filtered));
    let mut browse = SearchRequest::new("");
    browse.filters = vec![Filter::Equals { field: "currency".into(), value: FilterValue::Text("EUR".into()) }];
    browse.sort = vec![Sort { field: "name".into(), descending: false }];
    browse.offset = 40;
    cases.push(("no words, filter, sort by name, page 3", browse));
    for (label, request) in cases {
        let mut latencies = Vec::with_capacity(queries);
        let mut total = 0;
        let started = Instant::now();
        for _ in 0..queries {
            let began = Instant::now();
            total = engine.search(pool, "products", &request).await?.total;
            latencies.push(began.elapsed());
        }
        let figures = Figures::new(queries, started.elapsed(), latencies);
        println!(
            "| {label} | {total} | {:.2} | {:.2} | {:.0} |",
            figures.percentile_ms(0.50),
            figures.percentile_ms(0.99),
            figures.per_second()
        );
    }
    Ok(())
}
