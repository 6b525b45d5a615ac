//! `vectis archive export` and `vectis archive verify`: the event log copied into Avro
//! files on object storage, and checked.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use vectis_event_store::{
    archive::{export, storage::ArchiveStore, verify},
    settings::StoreSettings,
};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Copy every committed event past the archive's cursor into Avro files (deflate),
    /// in global order, with a manifest for the run. Run it again to export what is new.
    Export {
        /// Where the archive lives: a directory (a path or file:///path).
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
        #[arg(env = "ARCHIVE_URL")]
        location: String,
    },
}

pub async fn archive(settings: StoreSettings, command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArchiveCommand::Export { location, file_events } => {
            anyhow::ensure!((1..=1_000_000).contains(&file_events), "--file-events must be 1 to 1000000");
            let store = ArchiveStore::open(&location)?;
            let pool = settings.pool()?;
            let manifest = export::export(&pool, &store, file_events, |progress| {
                eprintln!(
                    "{}/{} events, {} bytes, through global position {}",
                    progress.events_done, progress.events_total, progress.bytes_done, progress.cursor
                );
            })
            .await
            .context("exporting")?;
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
            let report = verify::verify(&store, &schemas, |_| {}).await.context("verifying")?;
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
    }
}
