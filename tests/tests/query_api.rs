//! The query side end to end: commands → event store → relay → broker → projectors →
//! read models → the GraphQL service, over HTTP, as a client sees it.

use std::{net::SocketAddr, time::Duration};

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::domain::{AccountCommand, InventoryCommand, OrderCommand};
use vectis_consumer::metrics::ConsumerMetrics;
use vectis_event_store::kafka::KafkaSettings;
use vectis_projectors::{
    read_models,
    search::{metrics::SearchMetrics, SearchEngine, SearchSettings},
};
use vectis_query_api::process::{QueryApi, QueryApiSettings};
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    Environment, Shutdown,
};
use vectis_test_support::{
    fresh_topics, http_get, http_request, shop::Shop, start_projector, until_caught_up, RelayHandle,
};

struct Service {
    addr: SocketAddr,
    key: String,
    shutdown: Shutdown,
}

/// The embedded search engine's directory for one test, removed when dropped.
struct SearchDir(std::path::PathBuf);

impl SearchDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("vectis-query-test-{}", Uuid::now_v7().simple())))
    }

    fn settings(&self) -> SearchSettings {
        SearchSettings::Embedded { root: self.0.clone() }
    }
}

impl Drop for SearchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Service {
    async fn start(pool: &PgPool, kafka: &KafkaSettings, environment: Environment, search: &SearchDir) -> Self {
        let mut settings = QueryApiSettings::from_env().expect("settings");
        settings.topic_prefix = kafka.naming.prefix().to_string();
        settings.environment = environment;
        settings.search = search.settings();
        settings.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let shutdown = Shutdown::new();
        let api = QueryApi::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
        let addr = api.addr();
        tokio::spawn(api.run_until_stopped());
        let (_, key) = ApiKeys::new(pool.clone()).create("reader", &[Scope::Read]).await.expect("key");
        Self { addr, key, shutdown }
    }

    /// Runs `query` with the reader's key; returns the HTTP status and the response.
    async fn post(&self, key: Option<&str>, body: &Value) -> (u16, Value) {
        let auth = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (status, body) = http_request(self.addr, "POST", "/graphql", &headers, Some(&body.to_string())).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// Runs `body` with the reader's key and `X-Consistency-Token: token`.
    async fn post_with_token(&self, token: &str, body: &str) -> Value {
        let auth = format!("Bearer {}", self.key);
        let headers = [("Authorization", auth.as_str()), ("X-Consistency-Token", token)];
        let (_, answer) = http_request(self.addr, "POST", "/graphql", &headers, Some(body)).await;
        serde_json::from_str(&answer).expect("JSON")
    }

    /// The `data` of a query that must succeed.
    async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, response) = self.post(Some(&self.key), &json!({ "query": query, "variables": variables })).await;
        assert_eq!(status, 200, "{response}");
        assert!(response.get("errors").is_none(), "{query}\n{response:#}");
        response["data"].clone()
    }

    /// The error codes of a query that must fail.
    async fn error_codes(&self, query: &str) -> Vec<String> {
        let (status, response) = self.post(Some(&self.key), &json!({ "query": query })).await;
        assert_eq!(status, 200, "{response}");
        let errors = response["errors"].as_array().unwrap_or_else(|| panic!("no errors: {response}"));
        errors.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("none").to_string()).collect()
    }

    async fn statements(&self) -> u64 {
        let (_, metrics) = http_get(self.addr, "/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("vectis_query_sql_statements_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("statement counter")
    }
}

struct World {
    acme: Uuid,
    northwind: Uuid,
    /// Acme's orders, oldest first.
    orders: Vec<Uuid>,
    cancelled: Uuid,
}

/// Accounts, products and orders through the command path, projected into the read
/// models and the search indexes (in `search`).
async fn world(
    pool: &PgPool,
    kafka: &KafkaSettings,
    acme_orders: usize,
    search: &SearchDir,
) -> (World, Vec<vectis_consumer::runtime::RunningConsumer>, RelayHandle) {
    let relay = RelayHandle::start(pool.clone(), kafka, 500);
    let metrics = ConsumerMetrics::default();
    let engine =
        SearchEngine::new(&search.settings(), kafka.naming.prefix(), SearchMetrics::default()).expect("engine");
    let mut projectors = Vec::new();
    for projection in read_models::all().into_iter().chain(vectis_projectors::search::projections(&engine)) {
        projectors.push(start_projector(pool, kafka, projection, &metrics).await);
    }
    let shop = Shop::new(pool);
    let approve = || vec![AccountCommand::Approve { by: "key:staff".into() }];
    let acme = shop.account("Acme Fasteners", "buyer@acme.example", approve()).await;
    let northwind = shop.account("Northwind Traders", "buyer@northwind.example", approve()).await;
    shop.account("Pending Parts", "buyer@pending.example", vec![]).await;
    shop.product("BOLT-M8", "Hex bolt M8", "Zinc-plated", 120, 5_000).await;
    shop.product("NUT-M8", "Hex nut M8", "Zinc-plated", 30, 5_000).await;
    shop.product("SPRING-10", "Compression spring", "Music wire", 340, 12).await;
    let mut orders = Vec::new();
    for n in 0..acme_orders {
        let lines: &[(&str, i64)] = if n % 2 == 0 { &[("BOLT-M8", 2), ("NUT-M8", 2)] } else { &[("NUT-M8", 1)] };
        orders.push(shop.order(acme, lines, vec![]).await);
    }
    let cancelled =
        shop.order(northwind, &[("SPRING-10", 1)], vec![OrderCommand::Cancel { reason: "changed mind".into() }]).await;
    let now = chrono::Utc::now();
    let reserve = InventoryCommand::Reserve {
        reservation_id: Uuid::now_v7(),
        order_id: Uuid::now_v7(),
        quantity: 2,
        expires_at: now + chrono::Duration::minutes(15),
        now,
    };
    shop.inventory("SPRING-10", vec![reserve]).await;
    // Applied after the reservation (same stream): the wait below sees both.
    shop.inventory(
        "SPRING-10",
        vec![InventoryCommand::Adjust {
            delta: -3,
            reason: vectis_schemas::events::AdjustmentReason::Damaged,
            note: None,
        }],
    )
    .await;
    let projections: Vec<_> =
        read_models::all().into_iter().chain(vectis_projectors::search::projections(&engine)).collect();
    until_caught_up(pool, kafka, &projections).await;
    // What the projectors process does every `PROJECTOR_LAG_INTERVAL_MS`: measure each
    // projection's lag and store it, where the query API reads it.
    let probe = vectis_consumer::lag::LagProbe::new(kafka).expect("lag probe");
    for projection in &projections {
        let target = vectis_read_side::Target { projection: projection.name(), version: 1 };
        let lag = probe.measure(pool, &target, projection.topics()).await.expect("lag");
        lag.save(pool).await.expect("stored");
    }
    (World { acme, northwind, orders, cancelled }, projectors, relay)
}

async fn stop(projectors: Vec<vectis_consumer::runtime::RunningConsumer>, relay: RelayHandle, service: Service) {
    service.shutdown.trigger();
    for projector in projectors {
        projector.stop().await.expect("clean stop");
    }
    relay.stop().await;
}

fn ids(connection: &Value) -> Vec<String> {
    connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("id").to_string())
        .collect()
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn graphql_answers_every_field_from_the_read_models(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let search = SearchDir::new();
    let (world, projectors, relay) = world(&pool, &kafka, 5, &search).await;
    let service = Service::start(&pool, &kafka, Environment::Development, &search).await;

    let data = service.data("{ health }", json!({})).await;
    assert_eq!(data["health"], "Vectis Commerce API is healthy");

    // One order with its relations.
    let order = service
        .data(
            "query($id: UUID!) { order(id: $id) { id accountId status lineCount total { amountMinor currency }
               account { id name status creditLimit { amountMinor currency } }
               lines { lineNo sku quantity unitPriceMinor lineTotalMinor }
               statusHistory { streamVersion status eventType } } }",
            json!({ "id": world.orders[0] }),
        )
        .await;
    let order = &order["order"];
    assert_eq!(order["id"], world.orders[0].to_string());
    assert_eq!(order["status"], "placed");
    assert_eq!(order["total"], json!({ "amountMinor": 300, "currency": "EUR" }));
    assert_eq!(order["account"]["name"], "Acme Fasteners");
    assert_eq!(order["account"]["status"], "approved");
    assert_eq!(
        order["lines"],
        json!([
            { "lineNo": 1, "sku": "BOLT-M8", "quantity": 2, "unitPriceMinor": 120, "lineTotalMinor": 240 },
            { "lineNo": 2, "sku": "NUT-M8", "quantity": 2, "unitPriceMinor": 30, "lineTotalMinor": 60 },
        ])
    );
    assert_eq!(order["statusHistory"][0]["status"], "placed");
    let missing = service.data("query($id: UUID!) { order(id: $id) { id } }", json!({ "id": Uuid::now_v7() })).await;
    assert_eq!(missing["order"], Value::Null);

    // Pagination: newest first, pages of 2, the last page says so.
    let page =
        "query($after: String, $account: UUID) { orders(filter: { accountId: $account }, first: 2, after: $after) {
                  totalCount pageInfo { hasNextPage hasPreviousPage endCursor } edges { cursor node { id } } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let data = service.data(page, json!({ "after": after, "account": world.acme })).await;
        let orders = &data["orders"];
        assert_eq!(orders["totalCount"], 5, "the total is the filter's, on every page");
        seen.extend(ids(orders));
        pages += 1;
        if !orders["pageInfo"]["hasNextPage"].as_bool().expect("bool") {
            break;
        }
        after = orders["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = world.orders.iter().rev().map(Uuid::to_string).collect();
    assert_eq!(seen, newest_first);

    // Filters, an empty result, a cursor from another list.
    let cancelled = service
        .data(r#"{ orders(filter: { status: "cancelled" }) { totalCount edges { node { id } } } }"#, json!({}))
        .await;
    assert_eq!(ids(&cancelled["orders"]), [world.cancelled.to_string()]);
    let none = service.data(r#"{ orders(filter: { status: "no-such-status" }) { totalCount pageInfo { hasNextPage } edges { node { id } } } }"#, json!({})).await;
    assert_eq!(none["orders"], json!({ "totalCount": 0, "pageInfo": { "hasNextPage": false }, "edges": [] }));
    let later = service
        .data(
            "query($after: DateTime) { orders(filter: { placedAfter: $after }) { totalCount } }",
            json!({ "after": chrono::Utc::now() + chrono::Duration::hours(1) }),
        )
        .await;
    assert_eq!(later["orders"]["totalCount"], 0);
    let accounts_cursor = service.data("{ accounts(first: 1) { pageInfo { endCursor } } }", json!({})).await;
    let foreign = accounts_cursor["accounts"]["pageInfo"]["endCursor"].as_str().expect("cursor").to_string();
    let codes = service.error_codes(&format!(r#"{{ orders(after: "{foreign}") {{ totalCount }} }}"#)).await;
    assert_eq!(codes, ["INVALID_CURSOR"]);
    assert_eq!(service.error_codes(r#"{ orders(after: "not-a-cursor") { totalCount } }"#).await, ["INVALID_CURSOR"]);

    // Accounts and their orders.
    let approved = service
        .data(r#"{ accounts(filter: { status: "approved" }) { totalCount edges { node { name orders(first: 1) { totalCount } } } } }"#, json!({}))
        .await;
    assert_eq!(approved["accounts"]["totalCount"], 2);
    // A status no row holds matches nothing, as before the statuses were enums.
    let none = service
        .data(r#"{ accounts(filter: { status: "active" }) { totalCount edges { node { id } } } }"#, json!({}))
        .await;
    assert_eq!(none["accounts"], json!({ "totalCount": 0, "edges": [] }));
    assert_eq!(
        approved["accounts"]["edges"][0]["node"],
        json!({ "name": "Acme Fasteners", "orders": { "totalCount": 5 } })
    );
    // An account's orders page like `orders` does.
    let account_page = "query($id: UUID!, $after: String) { account(id: $id) { orders(first: 2, after: $after) {
                          totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } } }";
    let (mut seen, mut after) = (Vec::new(), Value::Null);
    loop {
        let data = service.data(account_page, json!({ "id": world.acme, "after": after })).await;
        let orders = &data["account"]["orders"];
        assert_eq!(orders["totalCount"], 5);
        seen.extend(ids(orders));
        if !orders["pageInfo"]["hasNextPage"].as_bool().expect("bool") {
            break;
        }
        after = orders["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, newest_first);
    let northwind = service
        .data("query($id: UUID!) { account(id: $id) { email approvalThreshold { amountMinor } orders { edges { node { status } } } } }", json!({ "id": world.northwind }))
        .await;
    assert_eq!(northwind["account"]["email"], "buyer@northwind.example");
    assert_eq!(northwind["account"]["orders"]["edges"][0]["node"]["status"], "cancelled");

    // Inventory and reservations.
    let spring = service
        .data(r#"{ inventoryItem(sku: "SPRING-10") { name onHand reserved available unitPrice { amountMinor } reservations { status quantity } } }"#, json!({}))
        .await;
    assert_eq!(spring["inventoryItem"]["onHand"], 9);
    assert_eq!(
        (spring["inventoryItem"]["reserved"].clone(), spring["inventoryItem"]["available"].clone()),
        (json!(2), json!(7))
    );
    assert_eq!(spring["inventoryItem"]["reservations"], json!([{ "status": "held", "quantity": 2 }]));
    assert_eq!(spring["inventoryItem"]["unitPrice"]["amountMinor"], 340);
    let low = service
        .data(
            "{ inventoryItems(filter: { lowStock: true }) { totalCount edges { node { sku available } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        low["inventoryItems"],
        json!({ "totalCount": 1, "edges": [{ "node": { "sku": "SPRING-10", "available": 7 } }] })
    );
    let all = service
        .data("{ inventoryItems(first: 2) { totalCount pageInfo { hasNextPage } edges { node { sku } } } }", json!({}))
        .await;
    assert_eq!(all["inventoryItems"]["totalCount"], 3);
    assert_eq!(all["inventoryItems"]["pageInfo"]["hasNextPage"], true);

    // Search: hits resolved to the read models' types, with highlights.
    let hits = "query($after: String) { search(index: PRODUCTS, query: \"compresion\", first: 1, after: $after) {
                  totalCount pageInfo { hasNextPage } edges { cursor node { id highlights { field text }
                  node { __typename ... on InventoryItem { sku available } } } } } }";
    let found = service.data(hits, json!({})).await;
    assert_eq!(found["search"]["totalCount"], 1, "{found}");
    let hit = &found["search"]["edges"][0]["node"];
    assert_eq!(hit["node"], json!({ "__typename": "InventoryItem", "sku": "SPRING-10", "available": 7 }));
    // The query's last word matches as a prefix, marked for its 10 characters.
    assert_eq!(hit["highlights"], json!([{ "field": "name", "text": "<em>Compressio</em>n spring" }]));
    let orders = service
        .data(
            r#"{ search(index: ORDERS, query: "acme", filter: [{ field: "total_minor", min: 100 }], sort: { field: "placed_at", descending: true }, first: 2) {
                  totalCount pageInfo { hasNextPage endCursor } edges { node { node { ... on Order { id account { name } } } } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(orders["search"]["totalCount"], 3, "Acme's orders of at least 1.00: {orders}");
    let first_page: Vec<&str> = orders["search"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["node"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(first_page, [world.orders[4].to_string(), world.orders[2].to_string()], "newest first");
    let codes = service
        .error_codes(r#"{ search(index: ORDERS, filter: [{ field: "currency", min: 1 }]) { totalCount } }"#)
        .await;
    assert_eq!(codes, ["BAD_USER_INPUT"]);

    // Projections, as `vectis projections status` shows them.
    let projections = service
        .data(
            "{ projections { name version state lagEvents lagSeconds lagMeasuredAt parkedEvents searchFreshnessSeconds } }",
            json!({}),
        )
        .await;
    let projections = projections["projections"].as_array().expect("list").clone();
    let names: Vec<&str> = projections.iter().map(|p| p["name"].as_str().expect("name")).collect();
    assert_eq!(
        names,
        ["accounts", "inventory", "orders", "recurring_orders", "search_accounts", "search_orders", "search_products"]
    );
    let orders_status = &projections[2];
    assert_eq!(
        (orders_status["version"].clone(), orders_status["state"].clone(), orders_status["parkedEvents"].clone()),
        (json!(1), json!("serving"), json!(0))
    );
    assert_eq!(orders_status["searchFreshnessSeconds"], Value::Null, "not a search index");
    // The lag the projectors stored (the query API asks no broker).
    assert_eq!((orders_status["lagEvents"].clone(), orders_status["lagSeconds"].clone()), (json!(0), json!(0.0)));
    assert!(orders_status["lagMeasuredAt"].is_string(), "{orders_status}");
    assert_eq!(projections[6]["searchFreshnessSeconds"], 0.0, "caught up");

    stop(projectors, relay, service).await;
}

/// Runs of each query in [`fewest_statements`]. Three were not enough on a fresh
/// two-core machine under the whole suite: every run of the 50-order page split a batch
/// (6 statements, not 5).
const STATEMENT_COUNT_RUNS: usize = 10;

/// The fewest SQL statements `query` cost over a few runs, each answering a page of
/// `first` edges of `connection`. The fewest: a loader collects keys for a fixed window
/// from the first one (`LOADER_BATCH_WINDOW`), and when the thread resolving a page's
/// nodes is descheduled longer than that mid-page (a busy machine), the keys after it
/// go into a second batch: one statement more, never one per row, which is what the
/// counts guard against.
async fn fewest_statements(service: &Service, query: &str, connection: &str, first: usize) -> u64 {
    let mut fewest = u64::MAX;
    for _ in 0..STATEMENT_COUNT_RUNS {
        let before = service.statements().await;
        let data = service.data(query, json!({})).await;
        assert_eq!(data[connection]["edges"].as_array().expect("edges").len(), first, "{query}");
        fewest = fewest.min(service.statements().await - before);
    }
    fewest
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_page_costs_the_same_statements_whatever_its_size(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let search = SearchDir::new();
    let (_, projectors, relay) = world(&pool, &kafka, 60, &search).await;
    let service = Service::start(&pool, &kafka, Environment::Development, &search).await;
    let query = |first: usize| {
        format!(
            "{{ orders(first: {first}) {{ totalCount edges {{ node {{ id account {{ name }} lines {{ sku quantity }} statusHistory {{ status }} }} }} }} }}"
        )
    };
    let (order_pages, account_pages) = ([1, 10, 50], [1, 3]);
    let mut costs = Vec::new();
    for first in order_pages {
        costs.push(fewest_statements(&service, &query(first), "orders", first).await);
    }
    // A page and its count, then one statement per relation (accounts, lines, history).
    assert_eq!(costs, [5, 5, 5], "statements for pages of 1, 10 and 50 orders with accounts and lines");
    // Accounts with their orders: also a constant number of statements.
    let accounts = |first: usize| {
        format!("{{ accounts(first: {first}) {{ edges {{ node {{ name orders(first: 3) {{ totalCount edges {{ node {{ id lines {{ sku }} }} }} }} }} }} }} }}")
    };
    let mut costs = Vec::new();
    for first in account_pages {
        costs.push(fewest_statements(&service, &accounts(first), "accounts", first).await);
    }
    assert_eq!(costs, [5, 5], "accounts page + count, orders pages, order counts, lines");
    let (_, metrics) = http_get(service.addr, "/metrics").await;
    let operations = (order_pages.len() + account_pages.len()) * STATEMENT_COUNT_RUNS;
    let operations_line = format!(r#"vectis_graphql_operations_total{{operation="anonymous"}} {operations}"#);
    for line in [
        operations_line.as_str(),
        "vectis_graphql_operation_duration_seconds_count",
        r#"http_requests_total{method="POST",route="/graphql",status="200"}"#,
        "vectis_db_pool_connections_in_use",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
    assert_eq!(http_get(service.addr, "/health").await.0, 200);
    let (status, ready) = http_get(service.addr, "/ready").await;
    assert_eq!(status, 200, "{ready}");
    stop(projectors, relay, service).await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn abusive_queries_are_refused_before_they_run(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let search = SearchDir::new();
    let service = Service::start(&pool, &kafka, Environment::Development, &search).await;
    let before = service.statements().await;

    let deep = "{ orders(first: 1) { edges { node { account { orders(first: 1) { edges { node { account {
                  orders(first: 1) { edges { node { account { name } } } } } } } } } } } } }";
    assert_eq!(service.error_codes(deep).await, ["QUERY_TOO_DEEP"]);
    let complex = "{ orders(first: 100) { edges { node { account { orders(first: 100) { edges { node { lines { sku } } } } } } } } }";
    assert_eq!(service.error_codes(complex).await, ["QUERY_TOO_COMPLEX"]);
    assert_eq!(service.error_codes("{ orders(first: 10000) { totalCount } }").await, ["BAD_USER_INPUT"]);
    assert_eq!(service.error_codes("{ orders(first: 0) { totalCount } }").await, ["BAD_USER_INPUT"]);
    let huge = format!("{{ health {} }}", " ".repeat(20_000));
    assert_eq!(service.error_codes(&huge).await, ["QUERY_TOO_LARGE"]);
    assert_eq!(service.error_codes("{ health").await, ["GRAPHQL_PARSE_FAILED"]);
    assert_eq!(service.error_codes("{ nope }").await, ["GRAPHQL_VALIDATION_FAILED"]);
    let cycle = "query { ...a } fragment a on QueryRoot { health ...b } fragment b on QueryRoot { ...a }";
    assert_eq!(
        service.error_codes(cycle).await,
        ["GRAPHQL_VALIDATION_FAILED"],
        "a fragment cycle is refused, not walked forever"
    );
    assert_eq!(service.statements().await, before, "none of them reached the database");
    let (status, _) =
        service.post(Some(&service.key), &json!({ "query": "{ health }", "pad": "x".repeat(70_000) })).await;
    assert_eq!(status, 413, "bodies over 64 KiB are refused");
    service.shutdown.trigger();
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn reading_needs_a_read_key_and_production_hides_the_schema(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let search = SearchDir::new();
    let development = Service::start(&pool, &kafka, Environment::Development, &search).await;
    let health = json!({ "query": "{ health }" });
    assert_eq!(development.post(None, &health).await.0, 401);
    assert_eq!(development.post(Some("vk_not-a-key"), &health).await.0, 401);
    let (_, writer) = ApiKeys::new(pool.clone()).create("warehouse", &[Scope::InventoryWrite]).await.expect("key");
    let (status, body) = development.post(Some(&writer), &health).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("read scope"), "{body}");
    let introspection = json!({ "query": "{ __schema { queryType { name } } }" });
    let (_, answer) = development.post(Some(&development.key), &introspection).await;
    assert_eq!(answer["data"]["__schema"]["queryType"]["name"], "QueryRoot");
    let (status, page) = http_get(development.addr, "/graphql").await;
    assert_eq!(status, 200);
    assert!(page.contains("graphiql"), "GraphiQL is served in development");

    let production = Service::start(&pool, &kafka, Environment::Production, &search).await;
    let (_, answer) = production.post(Some(&production.key), &introspection).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "INTROSPECTION_DISABLED", "{answer}");
    let hidden = json!({ "query": "query { ...f } fragment f on QueryRoot { __type(name: \"Order\") { name } }" });
    let (_, answer) = production.post(Some(&production.key), &hidden).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "INTROSPECTION_DISABLED", "{answer}");
    assert_eq!(http_get(production.addr, "/graphql").await.0, 405, "no GraphiQL in production");
    assert_eq!(production.data("{ health }", json!({})).await["health"], "Vectis Commerce API is healthy");
    development.shutdown.trigger();
    production.shutdown.trigger();
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn a_query_with_a_commands_token_reads_that_write(pool: PgPool) {
    use vectis_command_api::process::{CommandApi, CommandApiSettings};
    let kafka = fresh_topics().await.expect("topics");
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let metrics = ConsumerMetrics::default();
    let mut projectors = Vec::new();
    for projection in read_models::all() {
        projectors.push(start_projector(&pool, &kafka, projection, &metrics).await);
    }
    let mut settings = CommandApiSettings::from_env().expect("settings");
    settings.store.kafka = kafka.clone();
    settings.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let commands_stopped = Shutdown::new();
    let commands = CommandApi::build_with_pool(settings, pool.clone(), commands_stopped.clone()).await.expect("builds");
    let commands_addr = commands.addr();
    tokio::spawn(commands.run_until_stopped());
    let (_, staff) = ApiKeys::new(pool.clone()).create("staff", &[Scope::Admin]).await.expect("key");
    let search = SearchDir::new();
    let service = Service::start(&pool, &kafka, Environment::Development, &search).await;
    let auth = format!("Bearer {staff}");
    let account_query = "query($id: UUID!) { account(id: $id) { name status version } }";

    for n in 0..5 {
        // Register, then read at once with the token: the account is there.
        let body = json!({
            "name": format!("Buyer {n}"), "email": format!("b{n}@example.com"),
            "credit_limit": { "amount_minor": 100_000, "currency": "EUR" },
            "approval_threshold": { "amount_minor": 10_000, "currency": "EUR" },
        });
        let (status, created) =
            http_request(commands_addr, "POST", "/v1/accounts", &[("Authorization", &auth)], Some(&body.to_string()))
                .await;
        assert_eq!(status, 201, "{created}");
        let created: Value = serde_json::from_str(&created).expect("JSON");
        let token = created["consistency_token"].as_str().expect("token").to_string();
        let id = created["stream_id"].as_str().expect("stream").trim_start_matches("account-").to_string();
        let request = json!({ "query": account_query, "variables": { "id": id } }).to_string();
        let answer = service.post_with_token(&token, &request).await;
        assert_eq!(answer["data"]["account"]["name"], format!("Buyer {n}"), "{answer}");
        assert_eq!(answer["extensions"]["stale"], false, "{answer}");

        // Approve, read with the new token: the new status, never the old one.
        let (status, approved) = http_request(
            commands_addr,
            "POST",
            &format!("/v1/accounts/{id}/approve"),
            &[("Authorization", &auth)],
            None,
        )
        .await;
        assert_eq!(status, 200, "{approved}");
        let approved: Value = serde_json::from_str(&approved).expect("JSON");
        let token = approved["consistency_token"].as_str().expect("token").to_string();
        let answer = service.post_with_token(&token, &request).await;
        assert_eq!(answer["data"]["account"]["status"], "approved", "{answer}");
        assert_eq!(answer["data"]["account"]["version"], 2);
    }

    // A version no projection will reach: the answer comes after the wait, marked stale.
    let (_, some) = http_request(
        commands_addr,
        "POST",
        "/v1/accounts",
        &[("Authorization", &auth)],
        Some(
            &json!({ "name": "Late", "email": "late@example.com",
            "credit_limit": { "amount_minor": 1, "currency": "EUR" },
            "approval_threshold": { "amount_minor": 1, "currency": "EUR" } })
            .to_string(),
        ),
    )
    .await;
    let some: Value = serde_json::from_str(&some).expect("JSON");
    let future = format!("{}@99", some["stream_id"].as_str().expect("stream"));
    let started = std::time::Instant::now();
    let answer = service.post_with_token(&future, r#"{"query":"{ health }"}"#).await;
    assert!(started.elapsed() >= Duration::from_secs(2), "waited the default 2 s");
    assert_eq!(answer["extensions"]["stale"], true, "{answer}");
    assert_eq!(answer["data"]["health"], "Vectis Commerce API is healthy", "answers with what it has");
    let answer = service.post_with_token("nonsense", r#"{"query":"{ health }"}"#).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "INVALID_CONSISTENCY_TOKEN", "{answer}");

    commands_stopped.trigger();
    stop(projectors, relay, service).await;
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn queries_beyond_the_rate_limit_get_429(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    sqlx::query(
        "INSERT INTO rate_limit_policies (client, endpoint, capacity, refill_per_second) VALUES ('*', 'POST /graphql', 2, 0.01)",
    )
    .execute(&pool)
    .await
    .expect("policy");
    let search = SearchDir::new();
    let service = Service::start(&pool, &kafka, Environment::Development, &search).await;
    let health = json!({ "query": "{ health }" });
    let statuses = [
        service.post(Some(&service.key), &health).await.0,
        service.post(Some(&service.key), &health).await.0,
        service.post(Some(&service.key), &health).await.0,
    ];
    assert_eq!(statuses, [200, 200, 429]);
    service.shutdown.trigger();
}
