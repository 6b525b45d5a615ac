//! What the benchmark binaries share: a database of their own, percentiles.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use sqlx::{postgres::PgPoolOptions, Executor, PgPool};
use uuid::Uuid;
use vectis_consumer::{lag::LagProbe, metrics::ConsumerMetrics, runtime::GroupConsumer, settings::ConsumerSettings};
use vectis_event_store::{
    kafka::KafkaSettings, AppendRequest, EventMetadata, EventStore, ExpectedVersion, NewEvent, MIGRATOR,
};
use vectis_projectors::{projection::Projection, store};
use vectis_read_side::Target;
use vectis_schemas::StreamId;

use vectis_test_support::{database_url, RelayHandle};

/// Concurrent appenders while filling.
pub const FILL_WRITERS: usize = 8;
/// Records per batch, as the projectors process runs by default.
pub const BATCH: usize = 5_000;

/// Operations done, how long they took in all, and each one's latency.
pub struct Figures {
    pub operations: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Figures {
    /// Sorts `latencies` for the percentiles.
    pub fn new(operations: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        Self { operations, elapsed, latencies }
    }

    pub fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[index].as_secs_f64() * 1000.0
    }
}

/// A migrated database of its own, next to DATABASE_URL's; drop it with
/// [`drop_database`].
pub async fn create_database(max_connections: u32) -> anyhow::Result<(PgPool, String)> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let admin = PgPoolOptions::new().max_connections(1).connect(&url).await?;
    let name = format!("vectis_bench_{}", Uuid::new_v4().simple());
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
    let pool = PgPoolOptions::new().max_connections(max_connections).connect(&database_url(&name)?).await?;
    MIGRATOR.run(&pool).await?;
    Ok((pool, name))
}

pub async fn drop_database(name: &str) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let admin = PgPoolOptions::new().max_connections(1).connect(&url).await?;
    // A background worker (autovacuum after a large fill) may still be attached, and
    // only a superuser may end it: wait for it to finish.
    let mut attempts = 0;
    loop {
        match admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await {
            Ok(_) => return Ok(()),
            Err(error) if attempts < 20 => {
                attempts += 1;
                tracing::debug!(%error, "cannot drop the benchmark database yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// `name` as a whole number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Appends and returns the last event's global position.
pub async fn append(store: &EventStore, stream_id: StreamId, events: Vec<NewEvent>) -> anyhow::Result<i64> {
    let outcome = store
        .append(AppendRequest {
            stream_id,
            expected: ExpectedVersion::NoStream,
            events,
            metadata: EventMetadata::default(),
        })
        .await?;
    outcome.events.last().map(|e| e.envelope.global_position).context("an append records its events")
}

/// Appends `units` workload units (`unit_streams(unit)`: new streams with their events) with a few concurrent writers, then relays every
/// event to the topics and waits for the last acknowledgement.
pub async fn fill(
    pool: &PgPool,
    store: &EventStore,
    kafka: &KafkaSettings,
    units: usize,
    unit_streams: fn(usize) -> Vec<(StreamId, Vec<NewEvent>)>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let writers: Vec<_> = (0..FILL_WRITERS)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for unit in (writer..units).step_by(FILL_WRITERS) {
                    for (stream, events) in unit_streams(unit) {
                        append(&store, stream, events).await?;
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let appended = started.elapsed();
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events").fetch_one(pool).await?;
    let started = Instant::now();
    let relay = RelayHandle::start(pool.clone(), kafka, 1000);
    loop {
        let cursor: i64 =
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM relay_cursors").fetch_one(pool).await?;
        if cursor >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.stop().await;
    println!(
        "{last} events appended in {:.1} s ({FILL_WRITERS} writers, one stream per append) and relayed in {:.1} s",
        appended.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A catch-up measured from the end of the first batch to the last event, so joining
/// the group (the same for both readers) is left out.
pub struct CatchUp {
    pub events: i64,
    pub first_batch: i64,
    pub steady: Duration,
}

impl CatchUp {
    pub fn per_second(&self) -> f64 {
        (self.events - self.first_batch) as f64 / self.steady.as_secs_f64()
    }
}

/// The checkpoints of a projection version, summed over its partitions: on fresh
/// topics, the number of records it has done.
pub async fn checkpointed(pool: &PgPool, target: &Target) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM projection_checkpoints WHERE projection = $1 AND version = $2",
    )
    .bind(target.projection)
    .bind(target.version)
    .fetch_one(pool)
    .await?)
}

/// The projectors-process projector from the beginning until it has checkpointed
/// `expected` records; prints its lag every few seconds as `vectis projections status`
/// measures it.
pub async fn projector_catch_up(
    pool: &PgPool,
    kafka: &KafkaSettings,
    projection: Arc<dyn Projection>,
    expected: i64,
) -> anyhow::Result<CatchUp> {
    let version = store::install(pool, projection.as_ref()).await?;
    let target = Target { projection: projection.name(), version };
    let topics = projection.topics();
    let running = GroupConsumer::new(
        pool.clone(),
        projection,
        version,
        ConsumerSettings::new(kafka.clone()),
        ConsumerMetrics::default(),
    )
    .start()?;
    let probe = LagProbe::new(kafka)?;
    let mut first_batch = None;
    let mut next_report = Instant::now() + Duration::from_secs(2);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = checkpointed(pool, &target).await?;
        if first_batch.is_none() && done > 0 {
            first_batch = Some((done, Instant::now()));
        }
        if done >= expected {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{} stuck at {done} of {expected}", target.projection);
        if Instant::now() >= next_report {
            let lag = probe.measure(pool, &target, topics).await?;
            println!(
                "  … {} v{}: {done} applied, lag {} events / {:.1} s",
                target.projection,
                target.version,
                lag.events(),
                lag.seconds()
            );
            next_report = Instant::now() + Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (first, since) = first_batch.context("no batch")?;
    let steady = since.elapsed();
    running.stop().await?;
    Ok(CatchUp { events: expected, first_batch: first, steady })
}

/// One keep-alive HTTP/1.1 connection: enough client for a loopback benchmark.
pub struct Connection {
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Connection {
    pub async fn open(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        Ok(Self { reader: tokio::io::BufReader::new(tokio::net::TcpStream::connect(addr).await?) })
    }

    /// Sends a JSON POST and returns the status and body.
    pub async fn post(&mut self, path: &str, key: &str, body: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status: u16 = line.split_whitespace().nth(1).context("status line")?.parse()?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// Registers and approves an account that may order without limit and without
/// approval, over the command API; returns its id.
pub async fn bench_account(connection: &mut Connection, key: &str) -> anyhow::Result<String> {
    let (status, body) = connection
        .post(
            "/v1/accounts",
            key,
            r#"{"name":"Bench","email":"bench@example.com","credit_limit":{"amount_minor":1000000000000,"currency":"EUR"},"approval_threshold":{"amount_minor":1000000000000,"currency":"EUR"}}"#,
        )
        .await?;
    anyhow::ensure!(status == 201, "register: {status} {}", String::from_utf8_lossy(&body));
    let stream: serde_json::Value = serde_json::from_slice(&body)?;
    let account = stream["stream_id"].as_str().context("stream id")?.trim_start_matches("account-").to_string();
    let (status, _) = connection.post(&format!("/v1/accounts/{account}/approve"), key, "").await?;
    anyhow::ensure!(status == 200, "approve: {status}");
    Ok(account)
}

/// The benchmark client is one address sending far more than the default policy
/// allows; give it a policy of its own, as an operator would for a heavy client.
pub async fn unthrottle_loopback(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO rate_limit_policies (client, endpoint, capacity, refill_per_second, description)
         VALUES ('127.0.0.1', '*', 1000000, 1000000, 'benchmark client')
         ON CONFLICT (client, endpoint) DO UPDATE SET capacity = EXCLUDED.capacity,
             refill_per_second = EXCLUDED.refill_per_second",
    )
    .execute(pool)
    .await?;
    Ok(())
}
