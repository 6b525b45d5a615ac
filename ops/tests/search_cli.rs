//! `vectis search` as an operator runs it: the real binary against a test's own
//! database, topics and embedded index directory, with a search projector running.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::PgPool;
use uuid::Uuid;
use vectis_consumer::metrics::ConsumerMetrics;
use vectis_event_store::{kafka::KafkaSettings, AppendRequest, EventMetadata, ExpectedVersion};
use vectis_projectors::search::{declaration::SearchRequest, metrics::SearchMetrics, SearchEngine, SearchSettings};
use vectis_schemas::StreamId;
use vectis_schemas::{
    events::{InventoryEvent, ItemCreated, Money},
    samples,
};
use vectis_test_support::{
    cli::{self, CliOutput},
    event_store, fresh_topics, start_projector, RelayHandle,
};

/// Runs `vectis <args>` against the test's database, topics and data directory.
async fn vectis(pool: &PgPool, kafka: &KafkaSettings, data_dir: &std::path::Path, args: &[&str]) -> CliOutput {
    cli::run(env!("CARGO_BIN_EXE_vectis"), pool, kafka, &[("VECTIS_DATA_DIR", data_dir.as_os_str())], args).await
}

async fn create_product(pool: &PgPool, sku: &str, name: &str, description: &str, price: i64, stock: i64) {
    let created: InventoryEvent = ItemCreated {
        sku: sku.into(),
        name: name.into(),
        description: description.into(),
        unit_price: Money::new(price, "EUR"),
    }
    .into();
    event_store(pool.clone())
        .append(AppendRequest {
            stream_id: StreamId::inventory_item(sku).expect("a SKU"),
            expected: ExpectedVersion::NoStream,
            events: vec![created.into(), samples::stock_received(sku, stock).into()],
            metadata: EventMetadata::default(),
        })
        .await
        .expect("append");
}

async fn until_total(engine: &SearchEngine, pool: &PgPool, query: &str, total: usize) {
    for _ in 0..600 {
        let results = engine.search(pool, "products", &SearchRequest::new(query)).await.expect("search");
        if results.total == total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {total} products for {query:?}");
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn an_operator_searches_and_reindexes_without_downtime(pool: PgPool) {
    let data_dir = std::env::temp_dir().join(format!("vectis-search-cli-{}", Uuid::now_v7().simple()));
    let kafka = fresh_topics().await.expect("topics");
    // The projectors process's view: the same data directory as the CLI's.
    let settings = SearchSettings::Embedded { root: data_dir.join("search") };
    let engine = SearchEngine::new(&settings, kafka.naming.prefix(), SearchMetrics::default()).expect("engine");
    let products = vectis_projectors::search::projections(&engine)
        .into_iter()
        .find(|p| p.name() == "search_products")
        .expect("products");
    create_product(&pool, "BOLT-M8", "Hex bolt M8", "Zinc-plated steel hex bolt", 120, 500).await;
    create_product(&pool, "SPRING-10", "Compression spring", "Music wire spring, 10 mm", 340, 50).await;
    create_product(&pool, "WASHER-M8", "Flat washer M8", "Stainless steel washer", 15, 2_000).await;
    let relay = RelayHandle::start(pool.clone(), &kafka, 100);
    let projector = start_projector(&pool, &kafka, products, &ConsumerMetrics::default()).await;
    until_total(&engine, &pool, "", 3).await;

    // A misspelled word finds the product, highlighted as Meilisearch does: the last
    // word matches as a prefix, marked for as many characters as it has.
    let found = vectis(&pool, &kafka, &data_dir, &["search", "query", "products", "compresion"]).await;
    assert_eq!(found.code, 0, "{}", found.stderr);
    let lines: Vec<&str> = found.stdout.lines().collect();
    assert_eq!(lines[0], "1 found", "{}", found.stdout);
    assert!(lines[1].starts_with("SPRING-10\t"), "{}", found.stdout);
    assert!(lines[1].contains("name: <em>Compressio</em>n spring"), "{}", found.stdout);

    // Filters and sort, as JSON.
    let json = vectis(
        &pool,
        &kafka,
        &data_dir,
        &["search", "query", "products", "--filter", "available>=100", "--sort", "unit_price_minor:desc", "--json"],
    )
    .await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let results: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let ids: Vec<&str> = results["hits"].as_array().expect("hits").iter().filter_map(|h| h["id"].as_str()).collect();
    assert_eq!(ids, ["BOLT-M8", "WASHER-M8"]);
    assert_eq!(results["total"], 2);
    assert_eq!(results["hits"][0]["document"]["available"], 500);

    // Mistakes get clear errors.
    let unfilterable = vectis(&pool, &kafka, &data_dir, &["search", "query", "products", "--filter", "name=x"]).await;
    assert_ne!(unfilterable.code, 0);
    assert!(
        unfilterable
            .stderr
            .contains("\"name\" is not filterable; filterable: sku, unit_price_minor, currency, available"),
        "{}",
        unfilterable.stderr
    );
    let unknown = vectis(&pool, &kafka, &data_dir, &["search", "query", "parts", "bolt"]).await;
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no search index \"parts\"; known: orders, accounts, products"),
        "{}",
        unknown.stderr
    );

    // Reindex while readers search: every search during it answers with all products.
    let searching = Arc::new(AtomicBool::new(true));
    let (searches, wrong) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (engine, pool, searching, searches, wrong) =
            (engine.clone(), pool.clone(), searching.clone(), searches.clone(), wrong.clone());
        tokio::spawn(async move {
            while searching.load(Ordering::SeqCst) {
                let results = engine.search(&pool, "products", &SearchRequest::new("")).await;
                searches.fetch_add(1, Ordering::SeqCst);
                if results.map(|r| r.total).ok() != Some(3) {
                    wrong.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let reindex = vectis(&pool, &kafka, &data_dir, &["search", "reindex", "products", "--progress-every", "0.2"]).await;
    searching.store(false, Ordering::SeqCst);
    reader.await.expect("reader");
    assert_eq!(reindex.code, 0, "{}\n{}", reindex.stdout, reindex.stderr);
    assert!(reindex.stdout.contains("search_products v2:"), "progress is shown: {}", reindex.stdout);
    assert!(reindex.stdout.contains("search_products: readers now use version 2"), "{}", reindex.stdout);
    assert!(searches.load(Ordering::SeqCst) > 10, "searches ran during the reindex");
    assert_eq!(wrong.load(Ordering::SeqCst), 0, "every search during the reindex found all products");
    let namespace = vectis_search::namespace_of(kafka.naming.prefix());
    assert!(!data_dir.join(format!("search/{namespace}products_v1")).exists(), "the old index is removed");
    assert!(data_dir.join(format!("search/{namespace}products_v2")).exists());

    // The running projector followed the new version: a new product is found there.
    create_product(&pool, "SPRING-20", "Extension spring", "Hook ends", 410, 20).await;
    until_total(&engine, &pool, "spring", 2).await;
    let found = vectis(&pool, &kafka, &data_dir, &["search", "query", "products", "extnsion"]).await;
    assert!(found.stdout.starts_with("1 found\nSPRING-20\t"), "{}", found.stdout);

    projector.stop().await.expect("projector stops");
    relay.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
