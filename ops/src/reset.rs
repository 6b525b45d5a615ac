//! `vectis projections reset`: replays a projection from a position or a time of the
//! log on a new version (blue/green), on record in the operator-actions trail.

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use vectis_consumer::settings::ConsumerSettings;
use vectis_event_store::settings::StoreSettings;
use vectis_projectors::{
    projection::Projection,
    rebuild::{self, RebuildError},
    reset::{self, ResetError, ResetPoint},
};
use vectis_runtime::Shutdown;

use crate::{audit, read_side::RebuildOptions};

#[derive(Debug, Clone, clap::Args)]
#[group(id = "point", required = true, multiple = false, args = ["to_position", "to_time"])]
pub struct ResetArgs {
    /// accounts, inventory, orders, or a search index's projection.
    pub name: String,
    /// Replay the events after this global position.
    #[arg(long)]
    pub to_position: Option<i64>,
    /// Replay the events recorded after this time (RFC 3339, `2026-12-04T09:00:00Z`).
    #[arg(long)]
    pub to_time: Option<DateTime<Utc>>,
    /// Why, for the record.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub options: RebuildOptions,
}

impl ResetArgs {
    fn point(&self) -> ResetPoint {
        match (self.to_position, self.to_time) {
            (Some(position), _) => ResetPoint::Position(position),
            (None, Some(at)) => ResetPoint::Time(at),
            // clap requires one of the two.
            (None, None) => ResetPoint::Position(0),
        }
    }
}

pub async fn reset(
    pool: &PgPool,
    settings: &StoreSettings,
    projection: Arc<dyn Projection>,
    args: &ResetArgs,
) -> anyhow::Result<ExitCode> {
    let RebuildOptions { max_batch, progress_every } = args.options;
    anyhow::ensure!((1..=100_000).contains(&max_batch), "--max-batch must be 1 to 100000");
    anyhow::ensure!(!args.reason.trim().is_empty(), "--reason must say why (it goes on record with the reset)");
    let name = projection.name();
    let position = match reset::resolve(pool, args.point()).await {
        Ok(position) => position,
        Err(error @ ResetError::PastTheLog { .. }) => {
            eprintln!("refused: {error}");
            return Ok(ExitCode::from(2));
        }
        Err(error) => return Err(error.into()),
    };
    let details = json!({"to_position": args.to_position, "to_time": args.to_time, "position": position});
    let record = audit::record(pool, &audit::cli_actor(), "projections.reset", name, &details, &args.reason).await?;
    let mut consumer_settings = ConsumerSettings::new(settings.kafka.clone());
    consumer_settings.max_batch = max_batch;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let interval = Duration::from_secs_f64(progress_every.max(0.1));
    let mut seeded_details = None;
    let outcome = async {
        let seeded = reset::seed(pool, projection.as_ref(), &settings.kafka, position, max_batch).await?;
        println!(
            "{name} v{}: the state at global position {} folded from the event store ({} events); \
             replaying {} partitions from there",
            seeded.target.version,
            seeded.position,
            seeded.events,
            seeded.offsets.len()
        );
        let offsets: Vec<_> =
            seeded.offsets.iter().map(|(t, p, o)| json!({"topic": t, "partition": p, "offset": o})).collect();
        seeded_details =
            Some(json!({"version": seeded.target.version, "events_folded": seeded.events, "offsets": offsets}));
        let target = seeded.target.clone();
        Ok::<_, ResetError>(
            rebuild::catch_up_and_switch(
                pool,
                projection,
                target,
                consumer_settings,
                interval,
                crate::read_side::print_progress,
                shutdown.wait(),
            )
            .await?,
        )
    }
    .await;
    let interrupted = matches!(outcome, Err(ResetError::Rebuild(RebuildError::Interrupted(_))));
    let outcome = outcome.map_err(anyhow::Error::from);
    record.finish(pool, &outcome, seeded_details.as_ref()).await?;
    match outcome {
        Ok(version) => {
            println!("{name}: readers now use version {version}, replayed from global position {position}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) if interrupted => {
            eprintln!("{name}: {error}");
            Ok(ExitCode::from(130))
        }
        Err(error) => Err(error).context("resetting"),
    }
}
