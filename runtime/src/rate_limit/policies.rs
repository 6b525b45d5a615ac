//! Rate-limit policies as stored in `rate_limit_policies`, and the choice of the one
//! that governs a request.

use std::net::IpAddr;

use sqlx::PgPool;

use super::client::IpBlock;

/// Which clients a policy covers.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientPattern {
    Any,
    Block(IpBlock),
}

/// One row of `rate_limit_policies`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub client: ClientPattern,
    /// `METHOD /route/{pattern}`, or `None` for every endpoint.
    pub endpoint: Option<String>,
    pub capacity: u32,
    pub refill_per_second: f64,
}

impl Policy {
    /// A policy for every client and endpoint.
    pub fn everywhere(capacity: u32, refill_per_second: f64) -> Self {
        Self { client: ClientPattern::Any, endpoint: None, capacity, refill_per_second }
    }

    /// A policy as written in the table or on the command line, checked: the client is
    /// `*`, an address or a CIDR block; the endpoint `*` or `METHOD /route`; the
    /// capacity 1 to 2,147,483,647 (the column is an `integer`); the rate positive.
    pub fn parse(client: &str, endpoint: &str, capacity: i64, refill_per_second: f64) -> Result<Self, PolicyError> {
        let invalid =
            |reason: String| PolicyError::Invalid { client: client.into(), endpoint: endpoint.into(), reason };
        let client_pattern = match client {
            "*" => ClientPattern::Any,
            block => ClientPattern::Block(block.parse().map_err(invalid)?),
        };
        let (method, route) = endpoint.split_once(' ').unwrap_or_default();
        let endpoint_ok = endpoint == "*"
            || (!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()) && route.starts_with('/'));
        if !endpoint_ok {
            return Err(invalid("the endpoint is '*' or 'METHOD /route', e.g. 'POST /v1/orders'".into()));
        }
        let capacity = u32::try_from(capacity).ok().filter(|c| (1..=i32::MAX as u32).contains(c));
        let capacity = capacity.ok_or_else(|| invalid("capacity must be 1 to 2147483647".into()))?;
        if !(refill_per_second.is_finite() && refill_per_second > 0.0) {
            return Err(invalid("the refill rate must be positive".into()));
        }
        let endpoint = (endpoint != "*").then(|| endpoint.to_string());
        Ok(Self { client: client_pattern, endpoint, capacity, refill_per_second })
    }

    fn covers(&self, client: IpAddr, endpoint: &str) -> bool {
        let client_matches = match &self.client {
            ClientPattern::Any => true,
            ClientPattern::Block(block) => block.contains(client),
        };
        client_matches && self.endpoint.as_deref().is_none_or(|own| own == endpoint)
    }

    /// More specific policies win: first by client (an address over a narrower block
    /// over a wider one over `*`), then by endpoint (a named one over `*`).
    fn specificity(&self) -> (i16, bool) {
        let client = match &self.client {
            ClientPattern::Any => -1,
            ClientPattern::Block(block) => i16::from(block.prefix()),
        };
        (client, self.endpoint.is_some())
    }

    /// The `RateLimit-Policy` header value: the burst, and the window in seconds in
    /// which an empty bucket fills again.
    pub fn header_value(&self) -> String {
        let window = (f64::from(self.capacity) / self.refill_per_second).ceil().max(1.0);
        format!("{};w={window}", self.capacity)
    }
}

/// Every policy in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet(Vec<Policy>);

impl PolicySet {
    pub fn new(policies: Vec<Policy>) -> Self {
        Self(policies)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The policy for this client and endpoint; `None` when none covers them, and
    /// then the request is not limited.
    pub fn governing(&self, client: IpAddr, endpoint: &str) -> Option<&Policy> {
        self.0.iter().filter(|policy| policy.covers(client, endpoint)).max_by_key(|policy| policy.specificity())
    }

    /// Reads the table. A row that cannot be used is an error naming it, so a bad
    /// edit leaves the policies in force as they were instead of silently dropping one.
    pub async fn load(pool: &PgPool) -> Result<Self, PolicyError> {
        let rows: Vec<(String, String, i32, f64)> = sqlx::query_as(
            "SELECT client, endpoint, capacity, refill_per_second FROM rate_limit_policies ORDER BY client, endpoint",
        )
        .fetch_all(pool)
        .await?;
        rows.into_iter()
            .map(|(client, endpoint, capacity, refill_per_second)| {
                Policy::parse(&client, &endpoint, i64::from(capacity), refill_per_second)
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// A row of `rate_limit_policies` as operators see and edit it (`vectis rate-limits`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PolicyRow {
    pub client: String,
    pub endpoint: String,
    pub capacity: i32,
    pub refill_per_second: f64,
    pub description: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl PolicyRow {
    pub async fn list(pool: &PgPool) -> Result<Vec<Self>, sqlx::Error> {
        sqlx::query_as(
            "SELECT client, endpoint, capacity, refill_per_second, description, updated_at
               FROM rate_limit_policies ORDER BY client, endpoint",
        )
        .fetch_all(pool)
        .await
    }

    /// Creates or replaces the policy for (`client`, `endpoint`). The values are
    /// checked first, so a mistake is refused with the reason before it reaches the
    /// table (whose constraints would refuse it too, less readably). Every running
    /// service applies the change within moments.
    pub async fn set(
        pool: &PgPool,
        client: &str,
        endpoint: &str,
        capacity: u32,
        refill_per_second: f64,
        description: &str,
    ) -> Result<(), PolicyError> {
        let policy = Policy::parse(client, endpoint, i64::from(capacity), refill_per_second)?;
        // `parse` keeps the capacity within the column's range.
        let capacity = i32::try_from(policy.capacity).unwrap_or(i32::MAX);
        sqlx::query(
            "INSERT INTO rate_limit_policies (client, endpoint, capacity, refill_per_second, description)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client, endpoint) DO UPDATE
                SET capacity = EXCLUDED.capacity, refill_per_second = EXCLUDED.refill_per_second,
                    description = EXCLUDED.description, updated_at = now()",
        )
        .bind(client)
        .bind(endpoint)
        .bind(capacity)
        .bind(refill_per_second)
        .bind(description)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Deletes the policy; false when there was none.
    pub async fn delete(pool: &PgPool, client: &str, endpoint: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM rate_limit_policies WHERE client = $1 AND endpoint = $2")
            .bind(client)
            .bind(endpoint)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    // Not a `source`: the message carries it, and reporters that print the chain
    // would repeat it.
    #[error("rate_limit_policies: {0}")]
    Database(sqlx::Error),
    #[error("rate-limit policy ({client}, {endpoint}) is not usable: {reason}")]
    Invalid { client: String, endpoint: String, reason: String },
}

impl From<sqlx::Error> for PolicyError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(client: &str, endpoint: &str, capacity: u32) -> Policy {
        Policy {
            client: if client == "*" {
                ClientPattern::Any
            } else {
                ClientPattern::Block(client.parse().expect("test value"))
            },
            endpoint: (endpoint != "*").then(|| endpoint.to_string()),
            capacity,
            refill_per_second: 1.0,
        }
    }

    #[test]
    fn the_most_specific_policy_governs() {
        let set = PolicySet::new(vec![
            policy("*", "*", 1),
            policy("*", "POST /v1/orders", 2),
            policy("10.0.0.0/8", "*", 3),
            policy("10.1.0.0/16", "*", 4),
            policy("10.1.2.3", "POST /v1/orders", 5),
        ]);
        let governing = |client: &str, endpoint: &str| {
            set.governing(client.parse().expect("test value"), endpoint).expect("test value").capacity
        };
        assert_eq!(governing("203.0.113.1", "GET /v1/streams/{stream_id}"), 1);
        assert_eq!(governing("203.0.113.1", "POST /v1/orders"), 2);
        assert_eq!(governing("10.9.9.9", "POST /v1/orders"), 3, "a client policy beats an endpoint one");
        assert_eq!(governing("10.1.9.9", "POST /v1/orders"), 4, "the narrower block wins");
        assert_eq!(governing("10.1.2.3", "POST /v1/orders"), 5);
        assert_eq!(governing("10.1.2.3", "POST /v1/accounts"), 4);
    }

    #[test]
    fn without_a_covering_policy_nothing_is_limited() {
        let set = PolicySet::new(vec![policy("10.0.0.0/8", "*", 3)]);
        assert!(set.governing("203.0.113.1".parse().expect("test value"), "POST /v1/orders").is_none());
    }

    #[test]
    fn the_policy_header_names_burst_and_window() {
        assert_eq!(Policy::everywhere(200, 100.0).header_value(), "200;w=2");
        assert_eq!(Policy::everywhere(5, 0.5).header_value(), "5;w=10");
    }
}
