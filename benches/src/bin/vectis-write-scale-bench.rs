//! Write side at scale: prints figures, asserts nothing.
//!
//! * A command's p50/p99 on one stream as it grows to 10; 1,000; 10,000 and 100,000
//!   events, with no snapshots nor cache (every load folds the whole stream), with
//!   snapshots only (a process that has not seen the stream: folds the tail after the
//!   newest snapshot), and with snapshots and the state cache (the default). Target:
//!   p50 at 100,000 ≤ 1.5 × p50 at 10.
//! * A bulk import of 100,000 item rows (`BENCH_IMPORT_ROWS`), rows/s, next to a bare
//!   `COPY` of the same event rows into a scratch table of the events table's shape
//!   (the ceiling). Target: ≥ 50 % of it.
//!
//! Run with `scripts/bench write-scale`. Each part uses a database of its own.

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{Executor, PgPool};
use vectis_benches::{create_database, drop_database, env_number, Figures};
use vectis_command_api::{
    domain::{InventoryCommand, InventoryItem},
    handling::CommandHandler,
    imports::{
        jobs::{self, Begun, NewImport},
        kinds::ImportKind,
        rows::{Format, Mapping},
        survey, Importer, DEFAULT_BATCH_ROWS,
    },
};
use vectis_event_store::{
    AppendRequest, EventMetadata, EventStore, ExpectedVersion, NewEvent, SnapshotPolicy, StoreMetrics,
};
use vectis_schemas::{events::Money, samples, SchemaCatalog, SchemaMode, StreamId};

const LENGTHS: [i64; 4] = [10, 1_000, 10_000, 100_000];

fn store(pool: &PgPool, policy: SnapshotPolicy) -> anyhow::Result<EventStore> {
    let catalog = Arc::new(SchemaCatalog::embedded()?);
    Ok(EventStore::new(pool.clone(), catalog, SchemaMode::Strict, StoreMetrics::default()).with_snapshot_policy(policy))
}

struct Config {
    name: &'static str,
    policy: SnapshotPolicy,
}

const CONFIGS: [Config; 3] = [
    Config { name: "no snapshots, no cache", policy: SnapshotPolicy { every: 0, cache_bytes: 0 } },
    Config { name: "snapshots (every 100)", policy: SnapshotPolicy { every: 100, cache_bytes: 0 } },
    Config { name: "snapshots + cache", policy: SnapshotPolicy { every: 100, cache_bytes: 64 << 20 } },
];

/// Grows `stream` to `length` events with plain appends (1,000 receipts each).
async fn grow(store: &EventStore, stream: &StreamId, sku: &str, length: i64) -> anyhow::Result<()> {
    loop {
        let version = store.stream_version(stream).await?.unwrap_or(0);
        if version >= length {
            return Ok(());
        }
        let events: Vec<NewEvent> =
            (0..(length - version).min(1_000)).map(|_| samples::stock_received(sku, 1).into()).collect();
        store
            .append(AppendRequest {
                stream_id: stream.clone(),
                expected: ExpectedVersion::Exact(version),
                events,
                metadata: EventMetadata::default(),
            })
            .await?;
    }
}

/// p50/p99 of receipts on `stream`, each loaded, decided and appended by the handler.
async fn commands(handler: &CommandHandler, stream: &StreamId, samples: usize) -> anyhow::Result<Figures> {
    let mut store = handler.store().clone();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        handler
            .execute::<InventoryItem, _>(&mut store, stream, None, &EventMetadata::default(), |_| {
                InventoryCommand::Receive { quantity: 1, reference: None }
            })
            .await?;
        latencies.push(t.elapsed());
    }
    Ok(Figures::new(samples, started.elapsed(), latencies))
}

async fn command_latency() -> anyhow::Result<()> {
    let samples = env_number("BENCH_WRITE_COMMANDS", 200) as usize;
    println!("\n## A command on one stream as it grows (receipts: load, decide, append; {samples} per cell)");
    println!("{:<24} {:>22} {:>22} {:>22} {:>22}", "", "10 events", "1,000 events", "10,000 events", "100,000 events");
    for config in CONFIGS {
        let (pool, name) = create_database(8).await?;
        let store = store(&pool, config.policy)?;
        let handler = CommandHandler::new(store.clone());
        let sku = "SCALE-1";
        let stream = StreamId::inventory_item(sku)?;
        let create = InventoryCommand::Create {
            sku: sku.into(),
            name: "Scale test".into(),
            description: String::new(),
            unit_price: Money::new(100, "EUR"),
        };
        let mut session = store.clone();
        handler
            .execute::<InventoryItem, _>(&mut session, &stream, None, &EventMetadata::default(), |_| create.clone())
            .await?;
        let mut cells = Vec::new();
        let mut p50s = Vec::new();
        for length in LENGTHS {
            grow(&store, &stream, sku, length).await?;
            // A full fold of 100,000 events takes long: fewer samples where every load is one.
            let n = if config.policy.every == 0 { samples.min((2_000_000 / length as usize).max(5)) } else { samples };
            // The first command after a plain fill has no snapshot yet (it takes one):
            // one warm-up, then the figures.
            commands(&handler, &stream, 1).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let figures = commands(&handler, &stream, n).await?;
            p50s.push(figures.percentile_ms(0.5));
            cells.push(format!("{:.2} / {:.2} ms", figures.percentile_ms(0.5), figures.percentile_ms(0.99)));
        }
        println!("{:<24} {:>22} {:>22} {:>22} {:>22}", config.name, cells[0], cells[1], cells[2], cells[3]);
        println!("{:<24} p50 at 100,000 / p50 at 10 = {:.2} (target ≤ 1.5)", "", p50s[3] / p50s[0].max(f64::EPSILON));
        pool.close().await;
        drop_database(&name).await?;
    }
    Ok(())
}

async fn bulk_import() -> anyhow::Result<()> {
    let rows = env_number("BENCH_IMPORT_ROWS", 100_000) as usize;
    println!("\n## Bulk import of {rows} item rows (CSV, {DEFAULT_BATCH_ROWS} rows per transaction)");
    let (pool, name) = create_database(8).await?;
    let store = store(&pool, SnapshotPolicy::default())?;
    let path = std::env::temp_dir().join(format!("vectis-bench-items-{}.csv", std::process::id()));
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(file, "sku,name,description,unit_price_minor,currency")?;
        for i in 0..rows {
            writeln!(file, "BENCH-{i:07},Hex bolt M{},Zinc plated,{},EUR", i % 30, 100 + i % 900)?;
        }
    }
    let started = Instant::now();
    let surveyed =
        survey(std::io::BufReader::new(std::fs::File::open(&path)?), ImportKind::Items, Format::Csv, &Mapping::new())?;
    let new = NewImport {
        kind: ImportKind::Items,
        file_name: "bench.csv".into(),
        file_sha256: surveyed.sha256,
        format: Format::Csv,
        mapping: Mapping::new(),
        actor: "bench".into(),
        total_rows: surveyed.rows,
        content: None,
    };
    let Begun::New(import) = jobs::begin(&pool, &new).await? else { anyhow::bail!("a fresh database has no imports") };
    let importer = Importer::new(CommandHandler::new(store), DEFAULT_BATCH_ROWS);
    let progress = importer.run(&import, std::io::BufReader::new(std::fs::File::open(&path)?), |_| {}).await?;
    let imported = started.elapsed();
    anyhow::ensure!(progress.done == rows as i64, "imported {} of {rows}", progress.done);

    // The ceiling: the same event rows, COPYed into a table of the events table's shape.
    pool.execute("CREATE TABLE scratch_events (LIKE events INCLUDING ALL)").await?;
    let mut conn = pool.acquire().await?;
    let mut out = conn
        .copy_out_raw(
            "COPY (SELECT event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata
                     FROM events ORDER BY global_position) TO STDOUT",
        )
        .await?;
    let mut dump = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut out).await {
        dump.extend_from_slice(&chunk?);
    }
    drop(out);
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY scratch_events (event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata)
             FROM STDIN",
        )
        .await?;
    copy.send(dump.as_slice()).await?;
    let copied = copy.finish().await?;
    let ceiling = started.elapsed();
    let import_rate = rows as f64 / imported.as_secs_f64();
    let copy_rate = copied as f64 / ceiling.as_secs_f64();
    println!(
        "{:<44} {:>12.0} rows/s  ({:.1} s, hashing and counting the file included)",
        "vectis import (every row a command)",
        import_rate,
        imported.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.0} rows/s  ({:.1} s)",
        "bare COPY of the same event rows (ceiling)",
        copy_rate,
        ceiling.as_secs_f64()
    );
    println!("{:<44} {:>11.0} %     (target ≥ 50 %)", "import / ceiling", 100.0 * import_rate / copy_rate);
    drop(conn);
    pool.close().await;
    drop_database(&name).await?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("# Write side at scale");
    command_latency().await?;
    bulk_import().await?;
    Ok(())
}
