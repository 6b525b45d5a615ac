//! `projections`: each projection version's state, lag and parked events, as
//! `vectis projections status` shows them. The lag is what the projectors last
//! measured and stored (the query API asks no broker); `lagMeasuredAt` says when.

use async_graphql::{Context, Error, Object, SimpleObject};
use chrono::{DateTime, Utc};
use vectis_read_side::{catalog, state, Target};
use vectis_search::SearchEngine;

use crate::db::ReadDb;

#[derive(SimpleObject, Debug, Clone)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: i32,
    /// `serving` (readers use it) or `rebuilding` (being built to replace it).
    pub state: String,
    /// Events on the broker not yet applied; null until the projectors measured it.
    pub lag_events: Option<i64>,
    /// Age of the oldest event not yet applied (0 when caught up). It keeps growing
    /// from the last measurement while that event stays unapplied.
    pub lag_seconds: Option<f64>,
    /// When the projectors last measured the lag (every `PROJECTOR_LAG_INTERVAL_MS`
    /// while they run): an old time means no projector is measuring it.
    pub lag_measured_at: Option<DateTime<Utc>>,
    pub parked_events: i64,
    /// For a search index: how old the oldest event not yet searchable is.
    pub search_freshness_seconds: Option<f64>,
}

#[derive(Default)]
pub struct ProjectionQueries;

#[Object]
impl ProjectionQueries {
    /// Every projection version, readers' versions first.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionStatus>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        let states = db.counted(state::states(&db.pool)).await?;
        let now = Utc::now();
        let mut statuses = Vec::new();
        for projection in states {
            // One a newer build installed: this build cannot say what it is.
            let Some(spec) = catalog::named(&projection.name) else { continue };
            let mut versions = vec![(projection.active_version, "serving")];
            versions.extend(projection.building_version.map(|v| (v, "rebuilding")));
            for (version, label) in versions {
                let target = Target { projection: spec.name, version };
                let lag = db.counted(state::measured_lag(&db.pool, &target)).await?;
                let parked = db.counted(state::parked_count(&db.pool, &target)).await?;
                let seconds = lag.as_ref().map(|l| l.seconds_at(now));
                statuses.push(ProjectionStatus {
                    name: projection.name.clone(),
                    version,
                    state: label.into(),
                    lag_events: lag.as_ref().map(|l| l.events),
                    lag_seconds: seconds,
                    lag_measured_at: lag.as_ref().map(|l| l.measured_at),
                    parked_events: parked,
                    search_freshness_seconds: SearchEngine::index_of(spec.name).and(seconds),
                });
            }
        }
        Ok(statuses)
    }
}
