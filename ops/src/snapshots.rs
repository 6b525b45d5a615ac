//! `vectis snapshots`: what the event store holds of aggregate snapshots, and purging
//! them. Snapshots are derived data; purging one only makes the next load of its
//! stream fold from the start (and take a new one).

use std::process::ExitCode;

use clap::Subcommand;
use vectis_command_api::handling::state_versions;
use vectis_event_store::{
    settings::StoreSettings,
    snapshots::{self, PurgeFilter},
};

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// Snapshots by aggregate and state version: how many, their size, the most events
    /// any stream has past its snapshot, and whether this build trusts them.
    Status,
    /// Deletes snapshots (all, one aggregate's, or those this build ignores).
    Purge {
        /// Only this aggregate's: account, inventory_item or order.
        #[arg(long)]
        aggregate: Option<String>,
        /// Only snapshots of another state version than this build's (they are ignored
        /// when loading and replaced as their streams are written).
        #[arg(long, requires = "aggregate")]
        stale: bool,
    },
}

pub async fn snapshots(settings: StoreSettings, command: SnapshotsCommand) -> anyhow::Result<ExitCode> {
    let pool = settings.pool()?;
    let current = state_versions();
    match command {
        SnapshotsCommand::Status => {
            println!(
                "SNAPSHOT_EVERY={} (0: none taken)\n{:<16} {:>13} {:>9} {:>10} {:>12}  trusted",
                settings.snapshots.every, "AGGREGATE", "STATE_VERSION", "SNAPSHOTS", "BYTES", "MAX_BEHIND"
            );
            for row in snapshots::status(&pool).await? {
                let trusted =
                    current.iter().any(|(name, version)| *name == row.aggregate && *version == row.state_version);
                println!(
                    "{:<16} {:>13} {:>9} {:>10} {:>12}  {}",
                    row.aggregate,
                    row.state_version,
                    row.snapshots,
                    row.bytes,
                    row.max_events_behind,
                    if trusted { "yes" } else { "no (another build's; ignored and replaced)" }
                );
            }
        }
        SnapshotsCommand::Purge { aggregate, stale } => {
            // The named aggregate's state version in this build (refusing an unknown name).
            let version = aggregate
                .as_ref()
                .map(|name| {
                    current
                        .iter()
                        .find(|(known, _)| known == name)
                        .map(|(_, version)| *version)
                        .ok_or_else(|| anyhow::anyhow!("no aggregate {name}: account, inventory_item or order"))
                })
                .transpose()?;
            let state_version_not = if stale { version } else { None };
            let purged = snapshots::purge(&pool, &PurgeFilter { aggregate, state_version_not }).await?;
            println!("purged {purged} snapshots");
        }
    }
    Ok(ExitCode::SUCCESS)
}
