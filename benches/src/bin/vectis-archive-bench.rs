//! The archive: prints figures, asserts nothing.
//!
//! * `vectis archive export` of 200,000 events (`BENCH_ARCHIVE_EVENTS`) into a local
//!   directory, events/s, next to a bare `SELECT` of the same rows (the ceiling of
//!   reading them).
//! * `vectis archive restore` of that archive into an empty store, events/s, next to a
//!   bare `COPY` of the same rows into an empty table of the events table's shape (the
//!   ceiling of writing them).
//!
//! Run with `scripts/bench archive`. Each store is a database of its own.

use std::time::Instant;

use sqlx::{Executor, PgPool};
use vectis_benches::{create_database, drop_database, env_number};
use vectis_event_store::archive::{
    export::{self, DEFAULT_FILE_EVENTS},
    format::ArchivedEvent,
    restore,
    storage::ArchiveStore,
};
use vectis_schemas::samples;

/// Events of the shop's usual kinds, each with an id of its own (so the files compress
/// as real ones do, not as repeats), ten per stream.
async fn fill(pool: &PgPool, events: u64) -> anyhow::Result<()> {
    let (account, order) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let accounts = [samples::account_registered(account, "Acme Tools GmbH")];
    let inventory = [samples::item_created("HEX-M10-40"), samples::stock_received("HEX-M10-40", 250)];
    let orders = [samples::order_placed(order, account, "HEX-M10-40", 12)];
    let samples: Vec<(String, &str, String)> = accounts
        .iter()
        .map(|e| (e.event_type().to_string(), "vectis.accounts", e.to_data().to_string()))
        .chain(inventory.iter().map(|e| (e.event_type().to_string(), "vectis.inventory", e.to_data().to_string())))
        .chain(orders.iter().map(|e| (e.event_type().to_string(), "vectis.orders", e.to_data().to_string())))
        .collect();
    let types: Vec<String> = samples.iter().map(|s| s.0.clone()).collect();
    let topics: Vec<&str> = samples.iter().map(|s| s.1).collect();
    let data: Vec<String> = samples.iter().map(|s| s.2.clone()).collect();
    sqlx::query(
        "INSERT INTO events (event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata)
         SELECT gen_random_uuid(), 'bench-' || (g / 10), g % 10 + 1, ($2::text[])[g % 4 + 1], ($1::text[])[g % 4 + 1], 1,
                jsonb_set(($3::text[])[g % 4 + 1]::jsonb, '{bench_id}', to_jsonb(gen_random_uuid()::text)),
                jsonb_build_object('correlation_id', gen_random_uuid(), 'occurred_at', now())
           FROM generate_series(0, $4 - 1) g ORDER BY g",
    )
    .bind(&types)
    .bind(&topics)
    .bind(&data)
    .bind(events as i64)
    .execute(pool)
    .await?;
    pool.execute(
        "INSERT INTO streams (stream_id, version) SELECT stream_id, max(stream_version) FROM events GROUP BY 1",
    )
    .await?;
    pool.execute("VACUUM ANALYZE events").await?;
    Ok(())
}

fn line(what: &str, events: u64, seconds: f64, note: &str) -> f64 {
    let rate = events as f64 / seconds;
    println!("{what:<48} {rate:>10.0} events/s  ({seconds:.2} s{note})");
    rate
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events = env_number("BENCH_ARCHIVE_EVENTS", 200_000);
    println!("# Archive: {events} events, files of {DEFAULT_FILE_EVENTS}");
    let (source, source_name) = create_database(4).await?;
    fill(&source, events).await?;
    let dir = std::env::temp_dir().join(format!("vectis-archive-bench-{}", uuid::Uuid::now_v7()));
    let store = ArchiveStore::create(&dir.to_string_lossy())?;

    let started = Instant::now();
    let manifest = export::export(&source, &store, DEFAULT_FILE_EVENTS, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(manifest.events == events, "exported {} of {events}", manifest.events);
    let note = format!(", {} files, {:.0} bytes/event", manifest.files.len(), manifest.bytes as f64 / events as f64);
    let exported = line("vectis archive export (Avro, deflate, directory)", events, seconds, &note);
    let started = Instant::now();
    let rows: Vec<ArchivedEvent> = sqlx::query_as(
        "SELECT global_position, event_id, stream_id, stream_version, topic, event_type, schema_version,
                data::text AS data, metadata::text AS metadata, recorded_at
           FROM events ORDER BY global_position",
    )
    .fetch_all(&source)
    .await?;
    let selected =
        line("bare SELECT of the same rows (ceiling)", rows.len() as u64, started.elapsed().as_secs_f64(), "");
    drop(rows);
    println!("{:<48} {:>10.0} %", "export / ceiling", 100.0 * exported / selected);

    let (target, target_name) = create_database(4).await?;
    let started = Instant::now();
    let restored = restore::restore(&store, &target, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(restored.events == events, "restored {} of {events}", restored.events);
    let restored_rate = line("vectis archive restore (into an empty store)", events, seconds, "");

    // The ceiling: the same rows, every column restore writes, COPYed into an empty table.
    let (scratch, scratch_name) = create_database(1).await?;
    let columns = "global_position, event_id, stream_id, stream_version, topic, event_type, schema_version, data, metadata, recorded_at";
    let mut out = source.acquire().await?;
    let mut stream =
        out.copy_out_raw(&format!("COPY (SELECT {columns} FROM events ORDER BY global_position) TO STDOUT")).await?;
    let mut dump = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        dump.extend_from_slice(&chunk?);
    }
    drop(stream);
    let mut conn = scratch.acquire().await?;
    let started = Instant::now();
    let mut copy = conn.copy_in_raw(&format!("COPY events ({columns}) FROM STDIN")).await?;
    copy.send(dump.as_slice()).await?;
    let copied = copy.finish().await?;
    let ceiling = line("bare COPY into an empty events table (ceiling)", copied, started.elapsed().as_secs_f64(), "");
    println!("{:<48} {:>10.0} %", "restore / ceiling", 100.0 * restored_rate / ceiling);

    drop((out, conn));
    for (pool, name) in [(source, source_name), (target, target_name), (scratch, scratch_name)] {
        pool.close().await;
        drop_database(&name).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
