//! Rate limiting shared by every HTTP service: a token bucket per client and endpoint
//! (DESIGN.md, "Operability"). Policies live in the `rate_limit_policies` table; a
//! trigger notifies `vectis_rate_limit_policies` on every change and each process
//! reloads them, so a change needs no restart. Every limited response carries the
//! `RateLimit-*` headers; a refusal is a 429 with `Retry-After`.

mod bucket;
mod client;
mod policies;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use axum::{
    extract::{connect_info::MockConnectInfo, ConnectInfo, MatchedPath, Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    middleware::Next,
    response::Response,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::oneshot;

use bucket::Buckets;
pub use bucket::Decision;
pub use client::{IpBlock, TrustedProxies};
pub use policies::{ClientPattern, Policy, PolicyError, PolicyRow, PolicySet};

use crate::{metric_names as names, problem::problem};

/// The channel the table's trigger notifies.
pub const POLICY_CHANNEL: &str = "vectis_rate_limit_policies";
/// Reload this often even without a notification, in case one was missed.
const RELOAD_FALLBACK: Duration = Duration::from_secs(60);
/// Wait this long before listening again after the connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    method: String,
    route: String,
}

struct Shared {
    policies: RwLock<Arc<PolicySet>>,
    buckets: Mutex<Buckets>,
    trusted: TrustedProxies,
    refused: Family<RefusalLabels, Counter>,
    /// Dropped with the limiter, which ends its reload task.
    _stop_reloading: oneshot::Sender<()>,
}

impl Shared {
    fn replace_policies(&self, policies: PolicySet) {
        *self.policies.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(policies);
    }
}

/// The rate limiter of one process. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

impl RateLimiter {
    /// Loads the policies (an unreadable table stops startup) and keeps them current
    /// from then on: on every notification, after every reconnection and once a minute.
    pub async fn start(pool: PgPool, trusted: TrustedProxies) -> Result<Self, PolicyError> {
        let policies = PolicySet::load(&pool).await?;
        tracing::info!(policies = policies.len(), "rate-limit policies loaded");
        let (stop, stopped) = oneshot::channel();
        let limiter = Self {
            shared: Arc::new(Shared {
                policies: RwLock::new(Arc::new(policies)),
                buckets: Mutex::default(),
                trusted,
                refused: Family::default(),
                _stop_reloading: stop,
            }),
        };
        tokio::spawn(keep_current(Arc::downgrade(&limiter.shared), pool, stopped));
        Ok(limiter)
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(names::HTTP_RATE_LIMITED, "Requests refused by rate limiting", self.shared.refused.clone());
    }

    pub fn policies(&self) -> Arc<PolicySet> {
        self.shared.policies.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Takes a token for `client` at `endpoint`; `None` when no policy covers them.
    pub fn check(&self, client: IpAddr, endpoint: &str) -> Option<(Decision, Policy)> {
        let policies = self.policies();
        let policy = policies.governing(client, endpoint)?;
        let mut buckets = self.shared.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some((buckets.take(client, endpoint, policy, Instant::now()), policy.clone()))
    }

    pub fn refusals(&self, method: &str, route: &str) -> u64 {
        self.shared.refused.get_or_create(&RefusalLabels { method: method.into(), route: route.into() }).get()
    }
}

async fn reload(shared: &std::sync::Weak<Shared>, pool: &PgPool) {
    match PolicySet::load(pool).await {
        Ok(policies) => {
            let Some(shared) = shared.upgrade() else { return };
            // The periodic reload mostly finds nothing new: only a change is news.
            let unchanged = **shared.policies.read().unwrap_or_else(|poisoned| poisoned.into_inner()) == policies;
            if unchanged {
                tracing::debug!(policies = policies.len(), "rate-limit policies reloaded, unchanged");
            } else {
                tracing::info!(policies = policies.len(), "rate-limit policies reloaded");
            }
            shared.replace_policies(policies);
        }
        Err(error) => tracing::warn!(%error, "rate-limit policies not reloaded; the previous ones stay in force"),
    }
}

/// Listens for policy changes until the limiter is dropped.
async fn keep_current(shared: std::sync::Weak<Shared>, pool: PgPool, mut stopped: oneshot::Receiver<()>) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(POLICY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = &mut stopped => return,
            listener = listener => match listener {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for rate-limit policy changes; retrying");
                    tokio::select! {
                        _ = &mut stopped => return,
                        () = tokio::time::sleep(RECONNECT_DELAY) => continue,
                    }
                }
            },
        };
        // Changes made while no one listened.
        reload(&shared, &pool).await;
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                notification = listener.try_recv() => match notification {
                    // A change (`Some`), or a lost connection (`None`: the next receive
                    // reconnects, and whatever changed meanwhile is read now).
                    Ok(_) => reload(&shared, &pool).await,
                    Err(error) => {
                        tracing::warn!(%error, "lost the rate-limit policy listener; reconnecting");
                        break;
                    }
                },
                () = tokio::time::sleep(RELOAD_FALLBACK) => reload(&shared, &pool).await,
            }
        }
    }
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

fn whole_seconds(duration: Duration) -> HeaderValue {
    HeaderValue::from(duration.as_secs_f64().ceil() as u64)
}

fn add_headers(headers: &mut HeaderMap, decision: &Decision, policy: &Policy) {
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(policy.capacity));
    headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET.clone(), whole_seconds(decision.full_in));
    if let Ok(value) = HeaderValue::from_str(&policy.header_value()) {
        headers.insert(RATELIMIT_POLICY.clone(), value);
    }
}

/// Middleware for matched routes: `route_layer(from_fn_with_state(limiter, rate_limit))`.
/// The service must be served with `into_make_service_with_connect_info::<SocketAddr>()`
/// (tests may use `MockConnectInfo`); without a peer address every request counts as
/// one unknown client.
pub async fn rate_limit(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let extensions = request.extensions();
    let peer = (extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer))
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|MockConnectInfo(peer)| peer))
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), SocketAddr::ip);
    let forwarded: Vec<&str> =
        request.headers().get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok()).collect();
    let client = limiter.shared.trusted.client(peer, &forwarded);
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let Some((decision, policy)) = limiter.check(client, &format!("{method} {route}")) else {
        return next.run(request).await;
    };
    if !decision.allowed {
        limiter.shared.refused.get_or_create(&RefusalLabels { method, route: route.clone() }).inc();
        tracing::debug!(%client, %route, "rate limited");
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "/problems/rate-limited",
            "Too many requests",
            format!(
                "this client may send {} requests at once to {route} and {} per second after that; retry after the Retry-After seconds",
                policy.capacity, policy.refill_per_second
            ),
        );
        add_headers(response.headers_mut(), &decision, &policy);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, whole_seconds(decision.retry_in.max(Duration::from_secs(1))));
        return response;
    }
    let mut response = next.run(request).await;
    add_headers(response.headers_mut(), &decision, &policy);
    response
}
