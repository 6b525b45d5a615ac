//! Query API benchmark: prints figures, asserts nothing.
//!
//! Appends `BENCH_QUERY_ACCOUNTS` (default 2,000) accounts with five three-line orders
//! each through the event store, relays and projects them, then drives the real
//! query API process with `BENCH_CLIENTS` (default 32) keep-alive clients over
//! loopback, `BENCH_SECONDS` (default 5) per query:
//! * `order(id)` with its status and total, a random order each time;
//! * a page of 50 orders with their accounts and lines.
//!
//! Run with `scripts/bench query`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::Context;
use uuid::Uuid;
use vectis_benches::{
    create_database, drop_database, env_number, fill, projector_catch_up, unthrottle_loopback, Connection, Figures,
};
use vectis_event_store::NewEvent;
use vectis_projectors::read_models;
use vectis_query_api::process::{QueryApi, QueryApiSettings};
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_schemas::StreamId;
use vectis_schemas::{
    events::{Money, OrderEvent, OrderLine, OrderPlaced},
    samples,
};
use vectis_test_support::{event_store, fresh_topics};

const ORDERS_PER_ACCOUNT: usize = 5;

/// Makes the next request's body (each call may ask for something else).
type RequestBody = Box<dyn Fn() -> String + Send + Sync>;

/// One account and its orders; order ids are derived from the unit so the benchmark
/// can ask for them.
fn unit_streams(unit: usize) -> Vec<(StreamId, Vec<NewEvent>)> {
    let account_id = Uuid::from_u128(unit as u128 + 1);
    let name = format!("Buyer {unit} Ltd");
    let mut streams =
        vec![(StreamId::account(account_id), vec![samples::account_registered(account_id, &name).into()])];
    for n in 0..ORDERS_PER_ACCOUNT {
        let order_id = order_id(unit, n);
        let lines: Vec<OrderLine> = (0..3)
            .map(|line| {
                let quantity = 1 + (unit + n + line) as i64 % 9;
                OrderLine {
                    sku: format!("PART-{}", (unit + line) % 500),
                    quantity,
                    unit_price: Money::new(125, "EUR"),
                    line_total: Money::new(125 * quantity, "EUR"),
                }
            })
            .collect();
        let total = Money::new(lines.iter().map(|l| l.line_total.amount_minor).sum(), "EUR");
        let placed: OrderEvent = OrderPlaced { order_id, account_id, currency: "EUR".into(), lines, total }.into();
        streams.push((StreamId::order(order_id), vec![placed.into()]));
    }
    streams
}

fn order_id(unit: usize, n: usize) -> Uuid {
    Uuid::from_u128((1u128 << 64) + (unit * ORDERS_PER_ACCOUNT + n) as u128)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let accounts = env_number("BENCH_QUERY_ACCOUNTS", 2_000) as usize;
    let (pool, database) = create_database(20).await?;
    let outcome = run(&pool, accounts).await;
    pool.close().await;
    drop_database(&database).await?;
    outcome
}

async fn run(pool: &sqlx::PgPool, accounts: usize) -> anyhow::Result<()> {
    let kafka = fresh_topics().await?;
    println!("# Vectis query API benchmark");
    println!("\n## Fill");
    fill(pool, &event_store(pool.clone()), &kafka, accounts, unit_streams).await?;
    for projection in read_models::all().into_iter().filter(|p| p.name() != "inventory") {
        let expected = if projection.name() == "accounts" { accounts } else { accounts * ORDERS_PER_ACCOUNT };
        projector_catch_up(pool, &kafka, projection, expected as i64).await?;
    }
    println!("{accounts} accounts and {} orders (3 lines each) projected", accounts * ORDERS_PER_ACCOUNT);

    unthrottle_loopback(pool).await?;
    let mut settings = QueryApiSettings::from_env()?;
    settings.topic_prefix = kafka.naming.prefix().to_string();
    settings.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let shutdown = vectis_runtime::Shutdown::new();
    let api = QueryApi::build_with_pool(settings, pool.clone(), shutdown.clone()).await?;
    let addr = api.addr();
    let serving = tokio::spawn(api.run_until_stopped());
    let (_, key) = ApiKeys::new(pool.clone()).create("bench", &[Scope::Read]).await?;

    let clients = env_number("BENCH_CLIENTS", 32) as usize;
    let seconds = env_number("BENCH_SECONDS", 5);
    println!("\n## GraphQL over loopback: {clients} keep-alive clients, {seconds} s per query");
    println!("| query | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let order_ids: Arc<Vec<Uuid>> =
        Arc::new((0..accounts).flat_map(|unit| (0..ORDERS_PER_ACCOUNT).map(move |n| order_id(unit, n))).collect());
    // Spread over every order (a stride coprime with nearly any count), not one hot row.
    let next = Arc::new(AtomicUsize::new(0));
    let by_id = |ids: Arc<Vec<Uuid>>| {
        move || {
            let n = next.fetch_add(1, Ordering::Relaxed).wrapping_mul(7_919) % ids.len().max(1);
            let id = ids.get(n).copied().unwrap_or_default();
            serde_json::json!({
                "query": "query($id: UUID!) { order(id: $id) { id status total { amountMinor currency } } }",
                "variables": { "id": id },
            })
            .to_string()
        }
    };
    let page = || {
        serde_json::json!({
            "query": "{ orders(first: 50) { totalCount edges { node { id status total { amountMinor } account { name } lines { sku quantity lineTotalMinor } } } } }"
        })
        .to_string()
    };
    let cases: Vec<(&str, RequestBody)> = vec![
        ("order(id)", Box::new(by_id(order_ids.clone()))),
        ("orders(first: 50) with account and lines", Box::new(page)),
    ];
    for (label, body) in cases {
        let body = Arc::new(body);
        let figures = drive(addr, &key, clients, std::time::Duration::from_secs(seconds), body).await?;
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} |",
            figures.per_second(),
            figures.percentile_ms(0.5),
            figures.percentile_ms(0.99)
        );
    }
    shutdown.trigger();
    serving.await??;
    Ok(())
}

/// `clients` connections posting `body()` until `duration` has passed; every answer
/// must be a 200 without errors.
async fn drive(
    addr: std::net::SocketAddr,
    key: &str,
    clients: usize,
    duration: std::time::Duration,
    body: Arc<RequestBody>,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (key, body) = (key.to_string(), body.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(addr).await?;
                let mut latencies = Vec::new();
                while started.elapsed() < duration {
                    let request = body();
                    let sent = Instant::now();
                    let (status, answer) = connection.post("/graphql", &key, &request).await?;
                    latencies.push(sent.elapsed());
                    let answer: serde_json::Value = serde_json::from_slice(&answer).context("a JSON answer")?;
                    anyhow::ensure!(status == 200 && answer.get("errors").is_none(), "{status}: {answer}");
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Figures::new(latencies.len(), started.elapsed(), latencies))
}
