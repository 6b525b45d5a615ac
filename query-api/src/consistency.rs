//! Read-your-writes: a command answers with a consistency token, `<stream id>@<version>`;
//! a query sent with it (`X-Consistency-Token`) waits, bounded, until the projections
//! it reads have applied that version of that stream. Those are the read models that
//! consume the stream's topic, and the search indexes that do when the query selects
//! `search`.

use std::{str::FromStr, time::Duration};

use vectis_projectors::{projection::schema_name, read_models, search::documents, store};
use vectis_schemas::TOPICS;

use crate::{db::ReadDb, errors};

/// The header a client passes the token in.
pub const HEADER: &str = "x-consistency-token";
/// The longest a query waits, whatever `CONSISTENCY_WAIT` says.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken {
    pub stream_id: String,
    pub version: i64,
}

impl FromStr for ConsistencyToken {
    type Err = async_graphql::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            errors::coded(
                format!("{HEADER}: {text:?} is not a consistency token (<stream id>@<version>, as commands answer)"),
                errors::INVALID_CONSISTENCY_TOKEN,
            )
        };
        let (stream_id, version) = text.rsplit_once('@').ok_or_else(invalid)?;
        let version: i64 = version.parse().map_err(|_| invalid())?;
        if stream_id.is_empty() || version < 1 || !TOPICS.iter().any(|t| stream_id.starts_with(t.stream_prefix)) {
            return Err(invalid());
        }
        Ok(Self { stream_id: stream_id.to_string(), version })
    }
}

impl ConsistencyToken {
    /// The projections a query must wait for: read models on the stream's topic, and
    /// search indexes on it when `searching`.
    pub fn projections(&self, searching: bool) -> Vec<&'static str> {
        let Some(topic) = TOPICS.iter().find(|t| self.stream_id.starts_with(t.stream_prefix)) else {
            return Vec::new();
        };
        let mut names: Vec<&'static str> =
            read_models::all().iter().filter(|p| p.topics().contains(&topic.name)).map(|p| p.name()).collect();
        if searching {
            names.extend(
                documents::all()
                    .iter()
                    .filter(|m| m.topics().contains(&topic.name))
                    .map(|m| m.declaration().projection),
            );
        }
        names
    }

    /// Waits until every projection in `projections` has applied the token's version;
    /// false when `timeout` passed first (or a projection could not be read).
    pub async fn wait(&self, db: &ReadDb, projections: &[&'static str], timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        let mut pending: Vec<&'static str> = projections.to_vec();
        loop {
            let mut still = Vec::new();
            for projection in pending {
                match self.applied(db, projection).await {
                    Ok(true) => {}
                    Ok(false) => still.push(projection),
                    Err(error) => {
                        tracing::warn!(projection, error = %error.message, "cannot read a projection's stream version");
                        still.push(projection);
                    }
                }
            }
            if still.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn applied(&self, db: &ReadDb, projection: &str) -> Result<bool, async_graphql::Error> {
        let mut conn = db.pool.acquire().await.map_err(errors::unavailable)?;
        let Some(state) = db.counted(store::state(&mut conn, projection)).await? else { return Ok(false) };
        let schema = schema_name(projection, state.active_version);
        let version: Option<i64> = db
            .counted(
                sqlx::query_scalar(&format!("SELECT version FROM {schema}.stream_versions WHERE stream_id = $1"))
                    .bind(&self.stream_id)
                    .fetch_optional(&mut *conn),
            )
            .await?;
        Ok(version.is_some_and(|v| v >= self.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_as_commands_write_them() {
        let token: ConsistencyToken = "order-0193a8f0-0000-7000-8000-000000000001@3".parse().expect("valid");
        assert_eq!(token.version, 3);
        assert_eq!(token.projections(false), ["orders"]);
        assert_eq!(token.projections(true), ["orders", "search_orders"]);
        let account: ConsistencyToken = "account-0193a8f0-0000-7000-8000-000000000001@1".parse().expect("valid");
        assert_eq!(account.projections(true), ["accounts", "search_orders", "search_accounts"]);
        for bad in ["", "order-1", "order-1@0", "order-1@x", "widget-1@2", "@2"] {
            assert!(bad.parse::<ConsistencyToken>().is_err(), "{bad:?}");
        }
    }
}
