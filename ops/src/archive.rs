//! `vectis archive export`, `verify` and `restore`: the event log copied into Avro
//! files on object storage, checked, and restored into an empty event store.

use std::{process::ExitCode, str::FromStr};

use anyhow::Context;
use clap::Subcommand;
use sqlx::{migrate::MigrateDatabase, postgres::PgConnectOptions, PgPool, Postgres};
use vectis_event_store::{
    archive::{export, restore, storage::ArchiveStore, verify},
    settings::StoreSettings,
    MIGRATOR,
};
use vectis_runtime::{database::DatabaseSettings, settings::Secret};

use crate::progress::{thousands, ProgressBar};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Copy every committed event past the archive's cursor into Avro files (deflate),
    /// in global order, with a manifest for the run. Run it again to export what is new.
    Export {
        /// Where the archive lives: a directory (a path or file:///path, created if
        /// missing) or s3://bucket/prefix (keys from AWS_ACCESS_KEY_ID and
        /// AWS_SECRET_ACCESS_KEY, the store from AWS_ENDPOINT_URL).
        #[arg(long = "to", env = "ARCHIVE_URL")]
        location: String,
        /// Events per file.
        #[arg(long, env = "ARCHIVE_FILE_EVENTS", default_value_t = export::DEFAULT_FILE_EVENTS)]
        file_events: usize,
    },
    /// Check an archive: every file readable, checksums and counts as the manifests
    /// say, ranges with no gap or overlap, every event's data valid against its schema.
    /// Exits 1 naming each problem.
    Verify {
        /// The archive: a directory or s3://bucket/prefix.
        #[arg(env = "ARCHIVE_URL")]
        location: String,
    },
    /// Rebuild an empty event store from an archive: the same event ids, streams,
    /// versions and global positions. The database is created if missing and migrated;
    /// one holding events is refused. Then run the relay (to fresh topics) and the
    /// projections on it to rebuild every read model.
    Restore {
        /// The archive: a directory or s3://bucket/prefix.
        #[arg(env = "ARCHIVE_URL")]
        location: String,
        /// The event store to rebuild, as a PostgreSQL URL.
        #[arg(long = "into")]
        into: String,
    },
}

pub async fn archive(settings: StoreSettings, command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArchiveCommand::Export { location, file_events } => {
            anyhow::ensure!((1..=1_000_000).contains(&file_events), "--file-events must be 1 to 1000000");
            let store = ArchiveStore::create(&location)?;
            let pool = settings.pool()?;
            let mut bar = ProgressBar::new("events", 0);
            let exported = export::export(&pool, &store, file_events, |progress| {
                let note = format!(
                    "{} bytes, through global position {}",
                    thousands(progress.bytes_done as i64),
                    progress.cursor
                );
                bar.show(progress.events_done as i64, progress.events_total as i64, note);
            })
            .await;
            bar.finish();
            let manifest = exported.context("exporting")?;
            if manifest.files.is_empty() {
                println!("nothing new: the archive already covers every committed event");
            } else {
                let last = manifest.files.last().map_or(0, |f| f.last);
                println!(
                    "exported {} events in {} files ({} bytes) through global position {last}; manifest {}",
                    manifest.events,
                    manifest.files.len(),
                    manifest.bytes,
                    manifest.name()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ArchiveCommand::Verify { location } => {
            let store = ArchiveStore::open(&location)?;
            let schemas = settings.load_schemas()?;
            let mut bar = ProgressBar::new("events", 0);
            let verified = verify::verify(&store, &schemas, |report| {
                let total = report.events_listed.max(report.events);
                bar.show(report.events as i64, total as i64, format!("{} files", report.files));
            })
            .await;
            bar.finish();
            let report = verified.context("verifying")?;
            for problem in &report.problems {
                println!("PROBLEM {problem}");
            }
            println!(
                "{} files, {} events, {} bytes, {} manifests, through global position {}: {}",
                report.files,
                report.events,
                report.bytes,
                report.manifests,
                report.last,
                if report.problems.is_empty() {
                    "verified".to_string()
                } else {
                    format!("{} problems", report.problems.len())
                }
            );
            Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        ArchiveCommand::Restore { location, into } => {
            let store = ArchiveStore::open(&location)?;
            let target = open_target(&settings.database, &into).await?;
            let mut bar = ProgressBar::new("events", 0);
            let restored = restore::restore(&store, &target, |progress| {
                bar.show(progress.events_done as i64, progress.events_total as i64, "");
            })
            .await;
            bar.finish();
            let restored = restored.context("restoring")?;
            println!(
                "restored {} events of {} streams from {} files into {}, through global position {}",
                restored.events,
                restored.streams,
                restored.files,
                described(&into),
                restored.last
            );
            println!("next: run the relay and the projectors on it, with topics of their own (VECTIS_TOPIC_PREFIX)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The target database, created if it does not exist, with the event store's schema.
async fn open_target(settings: &DatabaseSettings, url: &str) -> anyhow::Result<PgPool> {
    let name = described(url);
    let options = PgConnectOptions::from_str(url).context("--into is not a PostgreSQL URL")?;
    // PostgreSQL cuts longer names silently: the cut name may be another database's.
    if options.get_database().is_some_and(|database| database.len() > 63) {
        anyhow::bail!("the database name in --into is longer than PostgreSQL's 63 bytes");
    }
    if !Postgres::database_exists(url).await.with_context(|| format!("connecting to {name}"))? {
        Postgres::create_database(url).await.with_context(|| format!("creating {name}"))?;
        eprintln!("created the database {name}");
    }
    let target = DatabaseSettings { url: Secret::new(url.to_string()), ..settings.clone() }.pool()?;
    MIGRATOR.run(&target).await.with_context(|| format!("migrating {name}"))?;
    Ok(target)
}

/// A database URL as it may be printed: host, port and name, no user or password.
fn described(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => {
            format!("postgres://{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or(""))
        }
        Err(_) => "the database named by --into".into(),
    }
}
