//! Search end to end: commands → event store → relay → broker → search projectors →
//! engine → the query side's search interface, against the real PostgreSQL, broker
//! and engine.
//!
//! One conformance suite runs against each engine: the embedded one always, and
//! Meilisearch when `MEILI_URL` (and `MEILI_MASTER_KEY`) is set.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::domain::{AccountCommand, InventoryCommand, Order, OrderCommand};
use vectis_consumer::{dead_letters, event::decode, metrics::ConsumerMetrics, runtime::RunningConsumer};
use vectis_event_store::kafka::KafkaSettings;
use vectis_projectors::{
    projection::Projection,
    search::{
        documents::{self, Documents},
        projection::SearchProjection,
    },
};
use vectis_schemas::StreamId;
use vectis_search::{
    backend::{EngineError, SearchBackend},
    declaration::{Filter, FilterValue, Hit, IndexDeclaration, SearchRequest, SearchResults, Sort},
    document::{engine_document, DocumentChange},
    embedded::EmbeddedBackend,
    metrics::SearchMetrics,
    namespace_of, SearchEngine, SearchSettings,
};
use vectis_test_support::{
    eventually, fresh_topics, shop::Shop, start_projector, until_caught_up, RelayHandle, TopicReader,
};

/// A data directory of the test's own, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("vectis-search-test-{}", Uuid::now_v7().simple())))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The three search projectors, writing to `engine`.
async fn start_search_projectors(pool: &PgPool, kafka: &KafkaSettings, engine: &SearchEngine) -> Vec<RunningConsumer> {
    let metrics = ConsumerMetrics::default();
    let mut running = Vec::new();
    for projection in vectis_projectors::search::projections(engine) {
        running.push(start_projector(pool, kafka, projection, &metrics).await);
    }
    running
}

fn request(query: &str) -> SearchRequest {
    SearchRequest::new(query)
}

fn text(value: &str) -> FilterValue {
    FilterValue::Text(value.into())
}

fn ids(results: &SearchResults) -> Vec<&str> {
    results.hits.iter().map(|hit| hit.id.as_str()).collect()
}

/// Ids of the hits, sorted: for results whose order is not what is asserted.
fn sorted_ids(results: &SearchResults) -> Vec<String> {
    let mut ids: Vec<String> = results.hits.iter().map(|hit| hit.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

fn hit<'a>(results: &'a SearchResults, id: &str) -> &'a Hit {
    results.hits.iter().find(|h| h.id == id).unwrap_or_else(|| panic!("no hit {id} in {results:#?}"))
}

/// Searches until `accept` holds: indexing is asynchronous to the commands.
async fn until(
    engine: &SearchEngine,
    pool: &PgPool,
    index: &str,
    request: &SearchRequest,
    what: &str,
    accept: impl Fn(&SearchResults) -> bool,
) -> SearchResults {
    eventually(Duration::from_secs(60), what, || async {
        let results = engine.search(pool, index, request).await.map_err(|e| e.to_string())?;
        if accept(&results) {
            Ok(results)
        } else {
            Err(format!("last results {results:#?}"))
        }
    })
    .await
}

async fn conformance(pool: PgPool, settings: SearchSettings) {
    let kafka = fresh_topics().await.expect("topics");
    let engine = SearchEngine::new(&settings, kafka.naming.prefix(), SearchMetrics::default()).expect("engine");
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let projectors = start_search_projectors(&pool, &kafka, &engine).await;
    let shop = Shop::new(&pool);
    let approve = || vec![AccountCommand::Approve { by: "key:staff".into() }];

    let acme = shop.account("Acme Fasteners", "purchasing@acme.example", approve()).await;
    let northwind = shop.account("Northwind Traders", "buyers@northwind.example", approve()).await;
    let _suspended = shop
        .account(
            "Bolt & Nut Supply",
            "orders@boltnut.example",
            vec![
                AccountCommand::Approve { by: "key:staff".into() },
                AccountCommand::Suspend { by: "key:staff".into(), reason: "late payments".into() },
            ],
        )
        .await;
    shop.product("BOLT-M8", "Hex bolt M8", "Zinc-plated steel hex bolt, 40 mm", 120, 500).await;
    shop.product("WASHER-M8", "Flat washer M8", "Stainless steel washer", 15, 2_000).await;
    shop.product("SPRING-10", "Compression spring", "Music wire spring, 10 mm", 340, 50).await;
    shop.product("NUT.M8", "Hex nut M8", "Zinc-plated steel nut", 30, 1_000).await;
    let placed = shop.order(acme, &[("BOLT-M8", 10), ("NUT.M8", 10)], vec![]).await;
    let cancelled =
        shop.order(northwind, &[("SPRING-10", 2)], vec![OrderCommand::Cancel { reason: "changed mind".into() }]).await;
    let confirmed = shop.order(acme, &[("WASHER-M8", 100)], vec![OrderCommand::Confirm]).await;

    // Everything indexed: 4 products, 3 accounts, 3 orders with their final state.
    // Everything searchable: every event relayed and every search projector at lag 0
    // (waiting for one document would not do: the others may be on other partitions,
    // and later events of a stream may not be applied yet).
    until_caught_up(&pool, &kafka, &vectis_projectors::search::projections(&engine)).await;
    until(&engine, &pool, "products", &request(""), "all products", |r| r.total == 4).await;
    until(&engine, &pool, "accounts", &request(""), "all accounts", |r| r.total == 3).await;
    let mut cancelled_orders = request("");
    cancelled_orders.filters = vec![Filter::Equals { field: "status".into(), value: text("cancelled") }];
    let found = until(&engine, &pool, "orders", &cancelled_orders, "the cancelled order", |r| r.total == 1).await;

    // A cancelled state is reflected, by filter and by words.
    assert_eq!(ids(&found), [cancelled.to_string()]);
    let by_word = engine.search(&pool, "orders", &request("cancelled")).await.expect("search");
    assert_eq!(ids(&by_word), [cancelled.to_string()], "status is searchable");

    // Exact match, highlighted.
    let washer = engine.search(&pool, "products", &request("washer")).await.expect("search");
    assert_eq!(ids(&washer), ["WASHER-M8"]);
    assert_eq!(hit(&washer, "WASHER-M8").highlights["name"], "Flat <em>washer</em> M8");
    assert_eq!(hit(&washer, "WASHER-M8").document["sku"], "WASHER-M8", "hits carry their document");

    // Typos: one in a 5–8 letter word, two in a longer one; none allowed in short words.
    // Both engines mark matches alike (Meilisearch's convention): a word matched whole
    // is marked whole, a word the last query word matched as a prefix is marked for
    // as many characters as that query word has.
    let typo = engine.search(&pool, "products", &request("compresion sprnig")).await.expect("search");
    assert_eq!(ids(&typo), ["SPRING-10"]);
    assert_eq!(hit(&typo, "SPRING-10").highlights["name"], "<em>Compression</em> <em>spring</em>");
    let typo = engine.search(&pool, "accounts", &request("fastners")).await.expect("search");
    assert_eq!(ids(&typo), [acme.to_string()]);
    assert_eq!(hit(&typo, &acme.to_string()).highlights["name"], "Acme <em>Fastener</em>s");
    let short = engine.search(&pool, "products", &request("nit")).await.expect("search");
    assert!(short.hits.is_empty(), "no typo allowed in a 3-letter word: {short:#?}");

    // Prefix: the last word as typed so far.
    let prefix = engine.search(&pool, "products", &request("compr")).await.expect("search");
    assert_eq!(ids(&prefix), ["SPRING-10"]);
    assert_eq!(hit(&prefix, "SPRING-10").highlights["name"], "<em>Compr</em>ession spring");
    let prefix = engine.search(&pool, "accounts", &request("north")).await.expect("search");
    assert_eq!(ids(&prefix), [northwind.to_string()]);
    assert_eq!(hit(&prefix, &northwind.to_string()).highlights["name"], "<em>North</em>wind Traders");
    let words = engine.search(&pool, "products", &request("zinc steel")).await.expect("search");
    assert_eq!(sorted_ids(&words), ["BOLT-M8", "NUT.M8"], "every word must match");

    // Filters: keyword, any-of, numeric ranges, combined with words.
    let mut approved = request("");
    approved.filters = vec![Filter::Equals { field: "status".into(), value: text("approved") }];
    let approved = engine.search(&pool, "accounts", &approved).await.expect("search");
    assert_eq!(sorted_ids(&approved), sorted(&[acme.to_string(), northwind.to_string()]));
    let mut cheap_steel = request("steel");
    cheap_steel.filters = vec![Filter::Range { field: "unit_price_minor".into(), min: None, max: Some(50) }];
    let cheap = engine.search(&pool, "products", &cheap_steel).await.expect("search");
    assert_eq!(sorted_ids(&cheap), ["NUT.M8", "WASHER-M8"]);
    let mut by_sku = request("");
    by_sku.filters = vec![Filter::AnyOf { field: "skus".into(), values: vec![text("NUT.M8"), text("SPRING-10")] }];
    let with_skus = engine.search(&pool, "orders", &by_sku).await.expect("search");
    assert_eq!(sorted_ids(&with_skus), sorted(&[placed.to_string(), cancelled.to_string()]));
    let invalid = engine
        .search(
            &pool,
            "products",
            &SearchRequest {
                filters: vec![Filter::Equals { field: "description".into(), value: text("x") }],
                ..request("")
            },
        )
        .await;
    assert!(
        matches!(&invalid, Err(e) if e.to_string().contains("not filterable")),
        "filtering on an undeclared field is the caller's error: {invalid:?}"
    );

    // Sort and pagination: pages are disjoint and together the full sorted list.
    let mut by_price = request("");
    by_price.sort = vec![Sort { field: "unit_price_minor".into(), descending: true }];
    let all = engine.search(&pool, "products", &by_price).await.expect("search");
    assert_eq!(ids(&all), ["SPRING-10", "BOLT-M8", "NUT.M8", "WASHER-M8"]);
    by_price.limit = 3;
    let first = engine.search(&pool, "products", &by_price).await.expect("search");
    by_price.offset = 3;
    let second = engine.search(&pool, "products", &by_price).await.expect("search");
    assert_eq!((first.total, second.total), (4, 4), "the total counts every match, not the page");
    assert_eq!([ids(&first), ids(&second)].concat(), ids(&all));
    let mut by_name = request("");
    by_name.sort = vec![Sort { field: "name".into(), descending: false }];
    let names = engine.search(&pool, "products", &by_name).await.expect("search");
    assert_eq!(ids(&names), ["SPRING-10", "WASHER-M8", "BOLT-M8", "NUT.M8"]);

    // A document updated by a later event: stock received changes what is available,
    // an order's status moves on.
    shop.inventory("SPRING-10", vec![InventoryCommand::Receive { quantity: 950, reference: None }]).await;
    let mut plenty = request("spring");
    plenty.filters = vec![Filter::Range { field: "available".into(), min: Some(1_000), max: None }];
    let updated = until(&engine, &pool, "products", &plenty, "the received stock", |r| r.total == 1).await;
    assert_eq!(hit(&updated, "SPRING-10").document["available"], 1_000);
    let order_store = shop.handler.store().clone();
    let mut store = order_store.clone();
    shop.handler
        .execute::<Order, _>(&mut store, &StreamId::order(confirmed), None, &shop.metadata, |_| OrderCommand::Ship {
            carrier: "DHL".into(),
            tracking_number: "T1".into(),
        })
        .await
        .expect("ship");
    let mut shipped = request("");
    shipped.filters = vec![Filter::Equals { field: "status".into(), value: text("shipped") }];
    let shipped = until(&engine, &pool, "orders", &shipped, "the shipped order", |r| r.total == 1).await;
    assert_eq!(ids(&shipped), [confirmed.to_string()]);
    // Orders carry their account's name (another stream, another topic).
    let acme_orders = engine.search(&pool, "orders", &request("acme")).await.expect("search");
    assert_eq!(sorted_ids(&acme_orders), sorted(&[placed.to_string(), confirmed.to_string()]));

    for projector in projectors {
        projector.stop().await.expect("clean stop");
    }
    relay.stop().await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_embedded_engine_passes_the_search_conformance_suite(pool: PgPool) {
    let dir = DataDir::new();
    conformance(pool, SearchSettings::Embedded { root: dir.0.clone() }).await;
}

/// Runs when `MEILI_URL` is set (README: "Search against a local Meilisearch");
/// otherwise there is no Meilisearch to test and it says so.
#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn meilisearch_passes_the_search_conformance_suite(pool: PgPool) {
    let settings = SearchSettings::from_env();
    if !matches!(settings, SearchSettings::Meilisearch { .. }) {
        eprintln!("MEILI_URL is not set: the Meilisearch run of the conformance suite is skipped");
        return;
    }
    conformance(pool, settings).await;
}

/// Every visible document of `index` in the engine, by id.
async fn engine_documents(engine: &SearchEngine, pool: &PgPool, index: &str) -> HashMap<String, Value> {
    let mut documents = HashMap::new();
    let mut page = request("");
    page.limit = 100;
    loop {
        let results = engine.search(pool, index, &page).await.expect("search");
        for hit in &results.hits {
            documents.insert(hit.document["id"].as_str().expect("id").to_string(), Value::Object(hit.document.clone()));
        }
        page.offset += page.limit;
        if page.offset >= results.total {
            return documents;
        }
    }
}

/// What an uninterrupted run produces: every event on the topics, folded once, in
/// stream order, by the same document models.
async fn expected_documents(kafka: &KafkaSettings, events: usize) -> HashMap<&'static str, HashMap<String, Value>> {
    let mut reader = TopicReader::new(kafka).expect("reader");
    let records = reader.read_at_least(events, Duration::from_secs(60)).await.to_vec();
    let mut expected = HashMap::new();
    for model in documents::all() {
        let mut docs = Documents::loaded([], model.link_field());
        let mut versions: HashMap<String, i64> = HashMap::new();
        for record in &records {
            let topic = record.topic.strip_prefix(kafka.naming.prefix()).unwrap_or(&record.topic);
            if !model.declaration().projection.reads(topic) {
                continue;
            }
            let event = decode(topic, record.key.as_deref(), &record.payload).expect("decodes");
            let version = versions.entry(event.stream_id.to_string()).or_default();
            if event.stream_version != *version + 1 {
                continue; // a duplicate from the relay's at-least-once publishing
            }
            *version = event.stream_version;
            model.apply(&mut docs, &event);
        }
        let declaration = model.declaration();
        let visible = docs
            .changed_state()
            .into_iter()
            .filter(|(key, _)| !key.starts_with('~'))
            .filter_map(|(key, body)| {
                body.map(|b| (key.clone(), Value::Object(engine_document(declaration, &key, &b))))
            })
            .collect();
        expected.insert(declaration.name, visible);
    }
    expected
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn killed_and_restarted_search_projectors_converge_to_an_uninterrupted_run(pool: PgPool) {
    let dir = DataDir::new();
    let kafka = fresh_topics().await.expect("topics");
    let engine = SearchEngine::new(
        &SearchSettings::Embedded { root: dir.0.clone() },
        kafka.naming.prefix(),
        SearchMetrics::default(),
    )
    .expect("engine");
    let relay = RelayHandle::start(pool.clone(), &kafka, 50);
    let shop = Arc::new(Shop::new(&pool));

    // The workload runs, paced, while the projectors are killed and restarted under it.
    let pace = Duration::from_millis(10);
    let workload = {
        let shop = shop.clone();
        tokio::spawn(async move {
            let mut accounts = Vec::new();
            for n in 0..60 {
                tokio::time::sleep(pace).await;
                let commands =
                    if n % 3 == 0 { vec![] } else { vec![AccountCommand::Approve { by: "key:staff".into() }] };
                accounts
                    .push((n, shop.account(&format!("Buyer {n} Ltd"), &format!("b{n}@example.com"), commands).await));
            }
            for n in 0..20 {
                tokio::time::sleep(pace).await;
                let sku = format!("PART-{n}");
                shop.product(&sku, &format!("Part {n}"), "Steel part", 100 + n, 50 + n).await;
                let adjust = InventoryCommand::Adjust {
                    delta: -1,
                    reason: vectis_schemas::events::AdjustmentReason::Damaged,
                    note: None,
                };
                shop.inventory(&sku, vec![adjust]).await;
            }
            for (n, account) in accounts.iter().filter(|(n, _)| n % 3 != 0) {
                tokio::time::sleep(pace).await;
                let then = match n % 3 {
                    1 => vec![OrderCommand::Cancel { reason: "changed mind".into() }],
                    _ => vec![OrderCommand::Confirm],
                };
                let sku = format!("PART-{}", n % 20);
                shop.order(*account, &[(sku.as_str(), 1 + *n as i64 % 4)], then).await;
            }
        })
    };
    let mut kills = 0;
    while !workload.is_finished() {
        let projectors = start_search_projectors(&pool, &kafka, &engine).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        for projector in projectors {
            projector.kill().await;
        }
        // A crash ends the process's threads too; here an engine write already handed to
        // a blocking thread outlives the aborted task, so let it finish as a dead
        // process's would never start again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        kills += 1;
    }
    workload.await.expect("workload");
    assert!(kills >= 3, "the projectors were killed mid-stream ({kills} times)");
    let projectors = start_search_projectors(&pool, &kafka, &engine).await;

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    let expected = expected_documents(&kafka, events as usize).await;
    let sizes: BTreeMap<&str, usize> = expected.iter().map(|(index, docs)| (*index, docs.len())).collect();
    assert_eq!(sizes, BTreeMap::from([("accounts", 60), ("orders", 40), ("products", 20)]));
    for (index, expected) in expected {
        eventually(
            Duration::from_secs(60),
            &format!("{index}'s documents to equal an uninterrupted run's"),
            || async {
                let actual = engine_documents(&engine, &pool, index).await;
                if actual == expected {
                    return Ok(());
                }
                let first_difference = expected.iter().find(|(id, doc)| actual.get(*id) != Some(doc));
                Err(format!(
                    "{} in the engine, {} expected; first difference: {first_difference:?}",
                    actual.len(),
                    expected.len()
                ))
            },
        )
        .await;
    }
    for projector in projectors {
        projector.stop().await.expect("clean stop");
    }
    relay.stop().await;
}

/// The real embedded engine, failing on purpose: the first `unavailable` writes as an
/// unreachable engine does, and every write holding the document `rejected` as a
/// failed Meilisearch task does (Meilisearch cannot run on this machine; the runtime's
/// handling is the same for both engines).
struct FailingEngine {
    inner: EmbeddedBackend,
    unavailable: AtomicUsize,
    rejected: String,
}

impl SearchBackend for FailingEngine {
    fn kind(&self) -> &'static str {
        "failing"
    }

    fn prepare<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        self.inner.prepare(index, declaration)
    }

    fn write<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
        changes: &'a [DocumentChange],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        let left = self.unavailable.load(Ordering::SeqCst);
        if left > 0 {
            self.unavailable.store(left - 1, Ordering::SeqCst);
            return async { Err(EngineError::Unavailable("connection refused".into())) }.boxed();
        }
        let poisoned = changes.iter().any(|c| matches!(c, DocumentChange::Upsert { id, .. } if *id == self.rejected));
        if poisoned {
            let message = format!("Meilisearch task document update failed: document {} is too large", self.rejected);
            return async move { Err(EngineError::Rejected(message)) }.boxed();
        }
        self.inner.write(index, declaration, changes)
    }

    fn search<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
        request: &'a SearchRequest,
    ) -> BoxFuture<'a, Result<SearchResults, EngineError>> {
        self.inner.search(index, declaration, request)
    }

    fn document_count<'a>(
        &'a self,
        index: &'a str,
        declaration: &'static IndexDeclaration,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        self.inner.document_count(index, declaration)
    }

    fn delete_index<'a>(&'a self, index: &'a str) -> BoxFuture<'a, Result<(), EngineError>> {
        self.inner.delete_index(index)
    }

    fn check(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        self.inner.check()
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn engine_failures_are_retried_or_parked_never_ignored(pool: PgPool) {
    let dir = DataDir::new();
    let kafka = fresh_topics().await.expect("topics");
    let engine = Arc::new(FailingEngine {
        inner: EmbeddedBackend::new(dir.0.clone()),
        unavailable: AtomicUsize::new(3),
        rejected: "POISON-1".into(),
    });
    let namespace = namespace_of(kafka.naming.prefix());
    let projection: Arc<dyn Projection> = Arc::new(SearchProjection::new(
        Arc::new(documents::ProductDocuments),
        engine.clone(),
        namespace.clone(),
        SearchMetrics::default(),
    ));
    let shop = Shop::new(&pool);
    shop.product("GOOD-1", "Hex bolt", "Steel", 100, 10).await;
    shop.product("POISON-1", "Hex nut", "Steel", 100, 10).await;
    shop.product("GOOD-2", "Flat washer", "Steel", 100, 10).await;
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let projector = start_projector(&pool, &kafka, projection, &metrics).await;

    // The rejected document's stream parks, with the engine's error; the others are
    // searchable; the unavailable engine cost retries, not dead letters.
    let parked = eventually(Duration::from_secs(60), "the rejected document to park", || async {
        let parked = dead_letters::list(&pool, Some("search_products"), false).await.map_err(|e| e.to_string())?;
        if parked.is_empty() {
            Err("nothing parked".to_string())
        } else {
            Ok(parked)
        }
    })
    .await;
    assert_eq!(engine.unavailable.load(Ordering::SeqCst), 0, "the unavailable engine was retried");
    let streams: Vec<&str> = parked.iter().filter_map(|p| p.letter.stream_id.as_deref()).collect();
    assert!(streams.iter().all(|s| *s == "inventory-POISON-1"), "only the rejected stream parks: {streams:?}");
    assert!(parked[0].letter.error.contains("document POISON-1 is too large"), "{}", parked[0].letter.error);
    let index = format!("{namespace}products_v1");
    let declaration = vectis_projectors::search::declaration("products").expect("declared");
    // The products sit on different partitions, so the good ones may be applied in
    // batches after the one that parked the rejected document.
    eventually(Duration::from_secs(60), "the good documents to be searchable", || async {
        let all = engine.inner.search(&index, declaration, &request("")).await.map_err(|e| e.to_string())?;
        if sorted_ids(&all) == ["GOOD-1", "GOOD-2"] {
            Ok(())
        } else {
            Err(format!("{:?}", sorted_ids(&all)))
        }
    })
    .await;
    let label = ConsumerMetrics::label("search_products");
    assert!(metrics.retries.get_or_create(&label).get() >= 3, "every failure counted as a retry");

    projector.stop().await.expect("clean stop");
    relay.stop().await;
}
