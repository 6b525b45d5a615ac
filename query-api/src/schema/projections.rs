//! `projections`: each projection version's state, lag and parked events, as
//! `vectis projections status` shows them.

use std::sync::Arc;

use async_graphql::{Context, Error, Object, SimpleObject};
use tokio::sync::Mutex;
use vectis_projectors::{
    lag::LagProbe,
    read_models,
    search::{documents, SearchEngine},
    store::{self, Target},
};

use crate::db::ReadDb;

/// The broker probe lag is measured with; one measurement at a time (it assigns
/// partitions to its one consumer).
#[derive(Clone)]
pub struct LagMeter(pub Arc<Mutex<LagProbe>>);

#[derive(SimpleObject, Debug, Clone)]
pub struct ProjectionStatus {
    pub name: String,
    pub version: i32,
    /// `serving` (readers use it) or `rebuilding` (being built to replace it).
    pub state: String,
    /// Events on the broker not yet applied; null when the broker could not be asked.
    pub lag_events: Option<i64>,
    /// Age of the oldest event not yet applied (0 when caught up).
    pub lag_seconds: Option<f64>,
    pub parked_events: i64,
    /// For a search index: how old the oldest event not yet searchable is.
    pub search_freshness_seconds: Option<f64>,
}

/// A projection this build knows: its name (as a [`Target`] holds it) and the logical
/// topics it reads.
fn known(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    let read_models = read_models::all().into_iter().map(|p| (p.name(), p.topics()));
    let search = documents::all().into_iter().map(|m| (m.declaration().projection, m.topics()));
    read_models.chain(search).find(|(known, _)| *known == name)
}

#[derive(Default)]
pub struct ProjectionQueries;

#[Object]
impl ProjectionQueries {
    /// Every projection version, readers' versions first.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionStatus>, Error> {
        let db = ctx.data_unchecked::<ReadDb>();
        let meter = ctx.data_unchecked::<LagMeter>();
        let states = db.counted(store::states(&db.pool)).await?;
        let mut statuses = Vec::new();
        for state in states {
            // One a newer build installed: nothing to measure it with.
            let Some((name, topics)) = known(&state.name) else { continue };
            let mut versions = vec![(state.active_version, "serving")];
            versions.extend(state.building_version.map(|v| (v, "rebuilding")));
            for (version, label) in versions {
                let target = Target { projection: name, version };
                let lag = meter.0.lock().await.measure(&db.pool, &target, topics).await;
                let lag = match lag {
                    Ok(lag) => Some(lag),
                    Err(error) => {
                        tracing::warn!(projection = name, %error, "cannot measure lag");
                        None
                    }
                };
                let parked = db.counted(store::parked_count(&db.pool, &target)).await?;
                let seconds = lag.as_ref().map(|l| l.seconds());
                statuses.push(ProjectionStatus {
                    name: state.name.clone(),
                    version,
                    state: label.into(),
                    lag_events: lag.as_ref().map(|l| l.events()),
                    lag_seconds: seconds,
                    parked_events: parked,
                    search_freshness_seconds: SearchEngine::index_of(name).and(seconds),
                });
            }
        }
        Ok(statuses)
    }
}
