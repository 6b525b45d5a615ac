//! Read-your-writes: a command answers with a consistency token, `<stream id>@<version>`;
//! a query sent with it (`X-Consistency-Token`) waits, bounded, until the projections
//! it reads have applied that version of that stream. Those are the read models that
//! consume the stream's topic, and the search indexes that do when the query selects
//! `search` (the read-side contract's catalog says which).

use std::time::Duration;

use vectis_read_side::{catalog, state};
use vectis_schemas::ConsistencyToken;

use crate::db::ReadDb;

/// The header a client passes the token in.
pub const HEADER: &str = "x-consistency-token";
/// The longest a query waits, whatever `CONSISTENCY_WAIT` says.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The projections a query must wait for: read models on the stream's topic, and
/// search indexes on it when `searching`.
pub fn projections(token: &ConsistencyToken, searching: bool) -> Vec<&'static str> {
    catalog::reading(token.stream.topic().name, searching).into_iter().map(|spec| spec.name).collect()
}

/// Waits until every projection in `projections` has applied the token's version;
/// false when `timeout` passed first (or a projection could not be read).
pub async fn wait(token: &ConsistencyToken, db: &ReadDb, projections: &[&'static str], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
    let mut pending: Vec<&'static str> = projections.to_vec();
    loop {
        let mut still = Vec::new();
        for projection in pending {
            match applied(token, db, projection).await {
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

async fn applied(token: &ConsistencyToken, db: &ReadDb, projection: &str) -> Result<bool, async_graphql::Error> {
    let mut conn = db.pool.acquire().await.map_err(crate::errors::unavailable)?;
    // Two statements: the serving version, then that version's stream row.
    let version = db.counted_as(2, state::applied_version(&mut conn, projection, token.stream.as_str())).await?;
    Ok(version.is_some_and(|v| v >= token.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_waits_for_the_projections_on_its_stream_topic() {
        let order: ConsistencyToken = "order-0193a8f0-0000-7000-8000-000000000001@3".parse().expect("valid");
        assert_eq!(projections(&order, false), ["orders"]);
        assert_eq!(projections(&order, true), ["orders", "search_orders"]);
        let account: ConsistencyToken = "account-0193a8f0-0000-7000-8000-000000000001@1".parse().expect("valid");
        assert_eq!(projections(&account, true), ["accounts", "recurring_orders", "search_orders", "search_accounts"]);
    }
}
