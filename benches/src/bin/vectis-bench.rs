//! Foundation benchmark: prints figures, asserts nothing.
//!
//! In one run, on the same PostgreSQL and broker:
//! * single-event appends/s and p50/p99 latency with 1, 8 and 32 concurrent writers,
//!   next to a bare INSERT+COMMIT of a row of the same size (the ceiling);
//! * relay throughput (committed → acknowledged), next to a bare rdkafka producer
//!   sending the same records with the same settings (the ceiling).
//!
//! Run with `scripts/bench`. Uses its own database and topics, dropped/left unused after.

use std::time::{Duration, Instant};
use vectis_schemas::StreamId;

use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
};
use sqlx::{Executor, PgPool};
use uuid::Uuid;
use vectis_benches::{
    bench_account, create_database, drop_database, env_number, unthrottle_loopback, Connection, Figures,
};
use vectis_event_store::{AppendRequest, EventMetadata, EventStore, ExpectedVersion, NewEvent};
use vectis_schemas::samples;
use vectis_test_support::{event_store, fresh_topics, RelayHandle};

const WRITER_COUNTS: [usize; 3] = [1, 8, 32];

fn phase_duration() -> Duration {
    Duration::from_secs(env_number("BENCH_SECONDS", 5))
}

/// Runs `writers` tasks calling `operation` until `duration` has passed.
async fn drive<F, Fut>(writers: usize, duration: Duration, operation: F) -> anyhow::Result<Figures>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let operation = operation.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0;
                while started.elapsed() < duration {
                    let t = Instant::now();
                    operation(writer, n).await?;
                    latencies.push(t.elapsed());
                    n += 1;
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

async fn bench_database() -> anyhow::Result<(PgPool, String)> {
    let (pool, name) = create_database(40).await?;
    pool.execute("CREATE TABLE bare_rows (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, data jsonb NOT NULL, metadata jsonb NOT NULL)")
        .await?;
    Ok((pool, name))
}

fn order_event(order_id: Uuid) -> NewEvent {
    samples::order_placed(order_id, Uuid::from_u128(7), "BENCH-SKU", 3).into()
}

/// Returns the event store's appends/s at the largest writer count: the ceiling the
/// command benchmark is compared with.
async fn bench_appends(pool: &PgPool, store: &EventStore) -> anyhow::Result<f64> {
    let duration = phase_duration();
    let sample = order_event(Uuid::now_v7());
    let metadata = serde_json::to_value(EventMetadata::default())?;
    println!("\n## Appends: one event per append, each writer on its own streams ({}s per row)", duration.as_secs());
    println!(
        "| writers | event store appends/s | p50 ms | p99 ms | bare INSERT+COMMIT/s | p50 ms | p99 ms | store / bare |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut ceiling = 0.0;
    for writers in WRITER_COUNTS {
        let store_figures = {
            let store = store.clone();
            drive(writers, duration, move |_, _| {
                let store = store.clone();
                async move {
                    let order = Uuid::now_v7();
                    store
                        .append(AppendRequest {
                            stream_id: StreamId::order(order),
                            expected: ExpectedVersion::NoStream,
                            events: vec![order_event(order)],
                            metadata: EventMetadata::default(),
                        })
                        .await?;
                    Ok(())
                }
            })
            .await?
        };
        let bare_figures = {
            let (pool, data, metadata) = (pool.clone(), sample.data.clone(), metadata.clone());
            drive(writers, duration, move |_, _| {
                let (pool, data, metadata) = (pool.clone(), data.clone(), metadata.clone());
                async move {
                    let mut tx = vectis_runtime::database::begin(&pool).await?;
                    sqlx::query("INSERT INTO bare_rows (data, metadata) VALUES ($1, $2)")
                        .bind(&data)
                        .bind(&metadata)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }
            })
            .await?
        };
        println!(
            "| {writers} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} % |",
            store_figures.per_second(),
            store_figures.percentile_ms(0.5),
            store_figures.percentile_ms(0.99),
            bare_figures.per_second(),
            bare_figures.percentile_ms(0.5),
            bare_figures.percentile_ms(0.99),
            100.0 * store_figures.per_second() / bare_figures.per_second()
        );
        ceiling = store_figures.per_second();
    }
    Ok(ceiling)
}

async fn bench_relay(pool: &PgPool, store: &EventStore) -> anyhow::Result<()> {
    let events = env_number("BENCH_RELAY_EVENTS", 20_000) as usize;
    // Fill: 100 events per append, committed before the relay starts.
    let already: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?;
    for chunk in 0..events / 100 {
        let sku = format!("BENCH-{chunk:05}");
        let mut batch = vec![samples::item_created(&sku).into()];
        batch.extend((1..100).map(|_| NewEvent::from(samples::stock_received(&sku, 1))));
        store
            .append(AppendRequest {
                stream_id: StreamId::inventory_item(&sku).expect("a SKU"),
                expected: ExpectedVersion::NoStream,
                events: batch,
                metadata: EventMetadata::default(),
            })
            .await?;
    }
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(pool).await?;
    // Wait until nothing holds any of them back, so the ceiling sends the same records.
    let stored = loop {
        let stored = store.read_all_committed(0, i64::MAX).await?;
        if stored.last().is_some_and(|e| e.envelope.global_position == last) {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let relayed = stored.len();
    println!("\n## Relay: {relayed} committed events ({already} from the append phase + {events}), to fresh topics");

    let kafka = fresh_topics().await?;
    let started = Instant::now();
    let relay = RelayHandle::start(pool.clone(), &kafka, 1000);
    loop {
        let cursor: i64 =
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM relay_cursors").fetch_one(pool).await?;
        if cursor >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relay_elapsed = started.elapsed();
    relay.stop().await;

    // The ceiling: the same records, keys and headers from a bare producer with the
    // relay's producer settings, every send then every delivery report.
    let ceiling_topics = fresh_topics().await?;
    let producer = ceiling_topics.idempotent_producer()?;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(stored.len());
    for event in &stored {
        let topic = ceiling_topics.naming.physical(&event.topic);
        let payload = event.envelope.to_json_bytes();
        let headers = event
            .envelope
            .headers(event.traceparent.as_deref())
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: Some(v) }));
        let record = FutureRecord::to(&topic).key(&event.envelope.stream_id).payload(&payload).headers(headers);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for delivery in deliveries {
        delivery.await.map_err(|_| anyhow::anyhow!("canceled"))?.map_err(|(e, _)| e)?;
    }
    let bare_elapsed = started.elapsed();

    let relay_rate = relayed as f64 / relay_elapsed.as_secs_f64();
    let bare_rate = relayed as f64 / bare_elapsed.as_secs_f64();
    println!("| path | events | seconds | events/s |");
    println!("|---|---|---|---|");
    println!(
        "| relay (read committed → produce → every ack → cursor) | {relayed} | {:.2} | {relay_rate:.0} |",
        relay_elapsed.as_secs_f64()
    );
    println!(
        "| bare rdkafka producer, same records | {relayed} | {:.2} | {bare_rate:.0} |",
        bare_elapsed.as_secs_f64()
    );
    println!("relay / bare producer: {:.0} %", 100.0 * relay_rate / bare_rate);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (pool, database) = bench_database().await?;
    let store = event_store(pool.clone());
    println!("# Vectis foundation benchmark");
    println!("PostgreSQL: {}; broker: {}", database, vectis_test_support::brokers());
    let outcome = async {
        let append_ceiling = bench_appends(&pool, &store).await?;
        bench_commands(&pool, append_ceiling).await?;
        bench_relay(&pool, &store).await
    }
    .await;
    pool.close().await;
    drop_database(&database).await?;
    outcome
}

/// `POST /v1/orders` through the real command API process with 32 keep-alive clients.
async fn bench_commands(pool: &PgPool, append_ceiling: f64) -> anyhow::Result<()> {
    use vectis_command_api::process::{CommandApi, CommandApiSettings};
    use vectis_runtime::auth::{ApiKeys, Scope};

    let clients = *WRITER_COUNTS.last().unwrap_or(&32);
    let mut settings = CommandApiSettings::from_env()?;
    settings.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    unthrottle_loopback(pool).await?;
    let shutdown = vectis_runtime::Shutdown::new();
    let api = CommandApi::build_with_pool(settings, pool.clone(), shutdown.clone()).await?;
    let addr = api.addr();
    let serving = tokio::spawn(api.run_until_stopped());
    let (_, key) = ApiKeys::new(pool.clone()).create("bench", &[Scope::Admin]).await?;

    let mut setup = Connection::open(addr).await?;
    let account = bench_account(&mut setup, &key).await?;
    let (status, _) = setup
        .post(
            "/v1/inventory/items",
            &key,
            r#"{"sku":"BENCH-ORDER","name":"Bench item","unit_price":{"amount_minor":100,"currency":"EUR"}}"#,
        )
        .await?;
    anyhow::ensure!(status == 201, "item: {status}");

    let order = format!(r#"{{"account_id":"{account}","lines":[{{"sku":"BENCH-ORDER","quantity":2}}]}}"#);
    let duration = phase_duration();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (key, order) = (key.clone(), order.clone());
            tokio::spawn(async move {
                let mut connection = Connection::open(addr).await?;
                let mut latencies = Vec::new();
                while started.elapsed() < duration {
                    let t = Instant::now();
                    let (status, body) = connection.post("/v1/orders", &key, &order).await?;
                    anyhow::ensure!(status == 201, "place order: {status} {}", String::from_utf8_lossy(&body));
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let figures = Figures::new(latencies.len(), started.elapsed(), latencies);
    shutdown.trigger();
    serving.await??;

    println!("\n## Commands: POST /v1/orders, {clients} keep-alive clients over loopback ({}s)", duration.as_secs());
    println!("| path | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| POST /v1/orders (auth, read account and item, decide, append) | {:.0} | {:.2} | {:.2} |",
        figures.per_second(),
        figures.percentile_ms(0.5),
        figures.percentile_ms(0.99)
    );
    println!("| event store appends at {clients} writers (same run, the ceiling) | {append_ceiling:.0} | | |");
    println!("orders / append ceiling: {:.0} %", 100.0 * figures.per_second() / append_ceiling);
    Ok(())
}
