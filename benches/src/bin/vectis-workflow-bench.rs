//! The workflows benchmark (prints, asserts nothing):
//! * orders/s from `POST /v1/orders` to confirmable (every line reserved, `OrderStockHeld`)
//!   with the relay and the workflows running, next to bare placement (the ceiling);
//! * place → confirmable latency p50/p99 at a steady rate (`BENCH_WORKFLOW_RATE`,
//!   default 200 orders/s, for `BENCH_WORKFLOW_SECONDS`, default 10), from the commit
//!   of the placement to the commit of `OrderStockHeld` (both the store's clock).
//!
//! The orders spread over `BENCH_WORKFLOW_SKUS` items (default 50): each reservation
//! folds its item's whole stream, so fewer SKUs mean longer streams and slower steps.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::PgPool;
use vectis_benches::{
    bench_account, create_database, drop_database, env_number, unthrottle_loopback, Connection, Figures,
};
use vectis_command_api::process::{CommandApi, CommandApiSettings};
use vectis_event_store::kafka::KafkaSettings;
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    Shutdown,
};
use vectis_test_support::{fresh_topics, RelayHandle};
use vectis_workflows::process::{WorkflowsProcess, WorkflowsSettings};

const CLIENTS: usize = 16;

struct Api {
    addr: std::net::SocketAddr,
    key: String,
    account: String,
    /// SKUs the orders spread over (`BENCH_WORKFLOW_SKUS`, default 50).
    skus: usize,
}

impl Api {
    fn order(&self, n: usize) -> String {
        let (a, b) = (n % self.skus, (n * 7 + 1) % self.skus);
        format!(
            r#"{{"account_id":"{}","lines":[{{"sku":"WF-{a}","quantity":1}},{{"sku":"WF-{b}","quantity":1}}]}}"#,
            self.account
        )
    }
}

async fn setup(pool: &PgPool, addr: std::net::SocketAddr) -> anyhow::Result<Api> {
    let (_, key) = ApiKeys::new(pool.clone()).create("bench", &[Scope::Admin]).await?;
    let mut connection = Connection::open(addr).await?;
    let account = bench_account(&mut connection, &key).await?;
    let skus = (env_number("BENCH_WORKFLOW_SKUS", 50) as usize).max(2);
    for sku in 0..skus {
        let item =
            format!(r#"{{"sku":"WF-{sku}","name":"Part","unit_price":{{"amount_minor":100,"currency":"EUR"}}}}"#);
        let (status, _) = connection.post("/v1/inventory/items", &key, &item).await?;
        anyhow::ensure!(status == 201, "item: {status}");
        let (status, _) =
            connection.post(&format!("/v1/inventory/items/WF-{sku}/receipts"), &key, r#"{"quantity":1000000}"#).await?;
        anyhow::ensure!(status == 201, "receipt: {status}");
    }
    Ok(Api { addr, key, account, skus })
}

/// Places `count` orders with `CLIENTS` keep-alive clients as fast as they are answered.
async fn place_flat_out(api: &Arc<Api>, count: usize) -> anyhow::Result<Figures> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (api, next) = (api.clone(), next.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(api.addr).await?;
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= count {
                        return anyhow::Ok(latencies);
                    }
                    let sent = Instant::now();
                    let (status, body) = connection.post("/v1/orders", &api.key, &api.order(n)).await?;
                    anyhow::ensure!(status == 201, "place: {status} {}", String::from_utf8_lossy(&body));
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Figures::new(latencies.len(), started.elapsed(), latencies))
}

/// Places one order every 1/`rate` s for `seconds` s (each on a client of its own turn).
async fn place_steadily(api: &Arc<Api>, rate: u64, seconds: u64, offset: usize) -> anyhow::Result<usize> {
    let total = (rate * seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (sender, receiver) = async_channel(CLIENTS * 4);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (api, receiver) = (api.clone(), receiver.clone());
        clients.push(tokio::spawn(async move {
            let mut connection = Connection::open(api.addr).await?;
            while let Ok(n) = receiver.recv().await {
                let (status, body) = connection.post("/v1/orders", &api.key, &api.order(n)).await?;
                anyhow::ensure!(status == 201, "place: {status} {}", String::from_utf8_lossy(&body));
            }
            anyhow::Ok(())
        }));
    }
    for n in 0..total {
        ticker.tick().await;
        sender.send(offset + n).await.ok();
    }
    drop(sender);
    for client in clients {
        client.await??;
    }
    Ok(total)
}

/// A multi-consumer queue of order numbers (tokio's mpsc behind a mutex).
fn async_channel(capacity: usize) -> (tokio::sync::mpsc::Sender<usize>, SharedReceiver) {
    let (sender, receiver) = tokio::sync::mpsc::channel(capacity);
    (sender, SharedReceiver(Arc::new(tokio::sync::Mutex::new(receiver))))
}

#[derive(Clone)]
struct SharedReceiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<usize>>>);

impl SharedReceiver {
    async fn recv(&self) -> Result<usize, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}

/// Orders placed and orders made confirmable so far.
async fn progress(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'OrderPlaced'), count(*) FILTER (WHERE event_type = 'OrderStockHeld')
           FROM events WHERE topic = 'vectis.orders'",
    )
    .fetch_one(pool)
    .await?)
}

async fn until_all_confirmable(pool: &PgPool, deadline: Duration) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        let (placed, held) = progress(pool).await?;
        if held >= placed {
            return Ok(Instant::now());
        }
        anyhow::ensure!(started.elapsed() < deadline, "{held} of {placed} orders confirmable after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Placement commit → `OrderStockHeld` commit, per order placed after `since`.
async fn place_to_confirmable(pool: &PgPool, since: i64) -> anyhow::Result<Figures> {
    let millis: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM h.recorded_at - p.recorded_at)::float8 * 1000
           FROM events p JOIN events h ON h.stream_id = p.stream_id AND h.event_type = 'OrderStockHeld'
          WHERE p.event_type = 'OrderPlaced' AND p.global_position > $1",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let latencies = millis.iter().map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)).collect();
    Ok(Figures::new(millis.len(), Duration::from_secs(1), latencies))
}

async fn run(pool: &PgPool, kafka: &KafkaSettings) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let mut settings = CommandApiSettings::from_env()?;
    settings.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.store.kafka = kafka.clone();
    unthrottle_loopback(pool).await?;
    let api = CommandApi::build_with_pool(settings, pool.clone(), shutdown.clone()).await?;
    let addr = api.addr();
    let serving = tokio::spawn(api.run_until_stopped());
    let api = Arc::new(setup(pool, addr).await?);
    let count = env_number("BENCH_WORKFLOW_ORDERS", 3000) as usize;

    // Bare placement: nothing downstream runs.
    let bare = place_flat_out(&api, count).await?;

    // The same placements with the relay and the workflows running, to confirmable.
    let relay = RelayHandle::start(pool.clone(), kafka, 500);
    let mut workflow_settings = WorkflowsSettings::from_env()?;
    workflow_settings.store.kafka = kafka.clone();
    workflow_settings.ops_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let workflows = WorkflowsProcess::build_with_pool(workflow_settings, pool.clone(), shutdown.clone()).await?;
    let workflows = tokio::spawn(workflows.run_until_stopped());
    // The bare run's orders are history the lifecycle works through first.
    until_all_confirmable(pool, Duration::from_secs(600)).await?;
    let started = Instant::now();
    let placed = place_flat_out(&api, count).await?;
    let done = until_all_confirmable(pool, Duration::from_secs(600)).await?;
    let to_confirmable = count as f64 / (done - started).as_secs_f64();

    let (rate, seconds) = (env_number("BENCH_WORKFLOW_RATE", 200), env_number("BENCH_WORKFLOW_SECONDS", 10));
    let since: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events").fetch_one(pool).await?;
    place_steadily(&api, rate, seconds, 2 * count).await?;
    until_all_confirmable(pool, Duration::from_secs(600)).await?;
    let steady = place_to_confirmable(pool, since).await?;

    println!(
        "\n## Orders to confirmable ({count} orders of two lines over {} SKUs, {CLIENTS} keep-alive clients over loopback)",
        api.skus
    );
    println!("| path | orders/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| POST /v1/orders alone (the ceiling) | {:.0} | {:.2} | {:.2} |",
        bare.per_second(),
        bare.percentile_ms(0.5),
        bare.percentile_ms(0.99)
    );
    println!(
        "| POST /v1/orders with relay and workflows running (answered) | {:.0} | {:.2} | {:.2} |",
        placed.per_second(),
        placed.percentile_ms(0.5),
        placed.percentile_ms(0.99)
    );
    println!(
        "| first POST → every order confirmable (two reservations and OrderStockHeld each) | {to_confirmable:.0} | | |"
    );
    println!("confirmable / bare placement: {:.0} %", 100.0 * to_confirmable / bare.per_second());
    println!("\n## Place → confirmable at a steady {rate} orders/s for {seconds} s ({} orders)", steady.operations);
    println!("| p50 ms | p99 ms | max ms |");
    println!("|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.1} |",
        steady.percentile_ms(0.5),
        steady.percentile_ms(0.99),
        steady.percentile_ms(1.0)
    );

    shutdown.trigger();
    workflows.await??;
    serving.await??;
    relay.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vectis_runtime::telemetry::init_tracing(vectis_runtime::Environment::Development, "warn")?;
    let (pool, database) = create_database(32).await?;
    let kafka = fresh_topics().await?;
    println!("# Vectis workflows benchmark");
    println!(
        "PostgreSQL database {database}; broker {}; topic prefix {}",
        vectis_test_support::brokers(),
        kafka.naming.prefix()
    );
    let outcome = run(&pool, &kafka).await;
    pool.close().await;
    drop_database(&database).await?;
    outcome
}
