//! What the projections record about themselves in PostgreSQL, for the query API and
//! the operators: which version serves and which is being built, parked events, the
//! version of each stream applied, and the lag last measured.

use chrono::{DateTime, Utc};
use futures::{future::BoxFuture, FutureExt};
use sqlx::{PgConnection, PgPool};

use crate::versions::Target;

/// A projection's versions: the one readers see, and the one a rebuild is building.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectionState {
    pub name: String,
    pub active_version: i32,
    pub building_version: Option<i32>,
    pub building_started_at: Option<DateTime<Utc>>,
}

impl ProjectionState {
    /// Whether `version` is active or being built (not retired).
    pub fn has_version(&self, version: i32) -> bool {
        self.active_version == version || self.building_version == Some(version)
    }
}

const STATE_COLUMNS: &str = "name, active_version, building_version, building_started_at";

/// Every installed projection, by name.
pub async fn states(pool: &PgPool) -> Result<Vec<ProjectionState>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {STATE_COLUMNS} FROM projections ORDER BY name")).fetch_all(pool).await
}

pub fn state<'a>(
    conn: &'a mut PgConnection,
    name: &'a str,
) -> BoxFuture<'a, Result<Option<ProjectionState>, sqlx::Error>> {
    async move {
        sqlx::query_as(&format!("SELECT {STATE_COLUMNS} FROM projections WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
    }
    .boxed()
}

/// Events of `target` parked and not yet retried or discarded.
pub async fn parked_count(pool: &PgPool, target: &Target) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM projection_dead_letters WHERE projection = $1 AND version = $2 AND status = 'parked'",
    )
    .bind(target.projection)
    .bind(target.version)
    .fetch_one(pool)
    .await
}

/// The version of `stream_id` the serving version of `projection` has applied: `None`
/// when it applied nothing of the stream yet, or the projection is not installed.
pub async fn applied_version(
    conn: &mut PgConnection,
    projection: &str,
    stream_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let Some(state) = state(conn, projection).await? else { return Ok(None) };
    let schema = crate::schema_name(projection, state.active_version);
    sqlx::query_scalar(&format!("SELECT version FROM {schema}.stream_versions WHERE stream_id = $1"))
        .bind(stream_id)
        .fetch_optional(&mut *conn)
        .await
}

/// How far a projection version was behind the log when the projectors last measured
/// it: stored so that readers without a broker client (the query API) can show it, and
/// so that it stays visible when the process that measured it is gone.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MeasuredLag {
    /// Events on the broker not yet applied.
    pub events: i64,
    /// When the oldest of them occurred (`None`: caught up, or it could not be read).
    pub oldest_unapplied_at: Option<DateTime<Utc>>,
    pub measured_at: DateTime<Utc>,
}

impl MeasuredLag {
    /// Age of the oldest unapplied event at `now`; 0 when caught up. It keeps growing
    /// after the measurement, as the real lag does while nothing is applied.
    pub fn seconds_at(&self, now: DateTime<Utc>) -> f64 {
        match (self.events, self.oldest_unapplied_at) {
            (0, _) | (_, None) => 0.0,
            (_, Some(at)) => (now - at).num_milliseconds().max(0) as f64 / 1000.0,
        }
    }
}

/// Records `lag` as `target`'s latest measurement.
pub async fn save_lag(pool: &PgPool, target: &Target, lag: &MeasuredLag) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_lag (projection, version, events, oldest_unapplied_at, measured_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (projection, version) DO UPDATE
            SET events = EXCLUDED.events, oldest_unapplied_at = EXCLUDED.oldest_unapplied_at,
                measured_at = EXCLUDED.measured_at
          WHERE projection_lag.measured_at <= EXCLUDED.measured_at",
    )
    .bind(target.projection)
    .bind(target.version)
    .bind(lag.events)
    .bind(lag.oldest_unapplied_at)
    .bind(lag.measured_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// `target`'s latest measurement, if it was ever measured.
pub async fn measured_lag(pool: &PgPool, target: &Target) -> Result<Option<MeasuredLag>, sqlx::Error> {
    sqlx::query_as(
        "SELECT events, oldest_unapplied_at, measured_at FROM projection_lag WHERE projection = $1 AND version = $2",
    )
    .bind(target.projection)
    .bind(target.version)
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_of_a_lag_grows_after_it_was_measured_and_is_zero_when_caught_up() {
        let measured_at = Utc::now();
        let behind = MeasuredLag {
            events: 4,
            oldest_unapplied_at: Some(measured_at - chrono::Duration::seconds(3)),
            measured_at,
        };
        assert_eq!(behind.seconds_at(measured_at), 3.0);
        assert_eq!(behind.seconds_at(measured_at + chrono::Duration::seconds(10)), 13.0);
        let caught_up = MeasuredLag { events: 0, ..behind };
        assert_eq!(caught_up.seconds_at(measured_at), 0.0);
    }
}
