//! What every Vectis process shares. Kept small on purpose: settings helpers,
//! tracing setup, the Prometheus registry with the metric names dashboards expect,
//! the `/metrics`, `/health` and `/ready` endpoints, and graceful shutdown.

pub mod auth;
pub mod database;
pub mod health;
pub mod http_metrics;
pub mod http_service;
pub mod metric_names;
pub mod pool_metrics;
pub mod problem;
pub mod rate_limit;
pub mod request_id;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use database::DatabaseSettings;
pub use health::{ops_router, serve_ops, OpsState, ReadinessCheck};
pub use settings::{env_duration, env_or, env_parse, Environment, Secret, SettingsError};
pub use shutdown::Shutdown;
