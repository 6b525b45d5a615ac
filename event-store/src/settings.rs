//! Settings every process that touches the event store or the broker shares, read
//! once from the environment. Each default is documented in the README.

use std::{path::PathBuf, sync::Arc};

use sqlx::PgPool;
use vectis_runtime::{env_or, env_parse, DatabaseSettings, Environment, SettingsError};
use vectis_schemas::{SchemaCatalog, SchemaLoadError, SchemaMode, TopicNaming};

use crate::{
    kafka::KafkaSettings,
    snapshots::{SnapshotPolicy, DEFAULT_SNAPSHOT_EVERY, DEFAULT_STATE_CACHE_BYTES},
};

pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub environment: Environment,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT`.
    pub database: DatabaseSettings,
    /// `KAFKA_BROKERS`, `VECTIS_TOPIC_PREFIX`, `KAFKA_REPLICATION_FACTOR`.
    pub kafka: KafkaSettings,
    /// `EVENT_SCHEMA_MODE`, default from `VECTIS_ENV`.
    pub schema_mode: SchemaMode,
    /// `VECTIS_SCHEMA_DIR`: load schemas from files instead of the built-in copy.
    pub schema_dir: Option<PathBuf>,
    /// `SNAPSHOT_EVERY` (default 100), `STATE_CACHE_BYTES` (default 64 MiB).
    pub snapshots: SnapshotPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsLoadError {
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    #[error(transparent)]
    SchemaMode(#[from] vectis_schemas::catalog::InvalidSchemaMode),
}

impl StoreSettings {
    pub fn from_env(client_id: &str) -> Result<Self, SettingsLoadError> {
        let environment = Environment::from_env()?;
        let explicit_mode = std::env::var("EVENT_SCHEMA_MODE").ok();
        let schema_mode = SchemaMode::resolve(explicit_mode.as_deref(), environment.as_str())?;
        let mut kafka = KafkaSettings::new(
            env_or("KAFKA_BROKERS", DEFAULT_KAFKA_BROKERS),
            TopicNaming::with_prefix(env_or("VECTIS_TOPIC_PREFIX", "")),
        );
        kafka.replication_factor = env_parse("KAFKA_REPLICATION_FACTOR", 1)?;
        kafka.client_id = client_id.to_string();
        Ok(Self {
            environment,
            database: DatabaseSettings::from_env()?,
            kafka,
            schema_mode,
            schema_dir: std::env::var_os("VECTIS_SCHEMA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from),
            snapshots: SnapshotPolicy {
                every: env_parse("SNAPSHOT_EVERY", DEFAULT_SNAPSHOT_EVERY)?,
                cache_bytes: env_parse("STATE_CACHE_BYTES", DEFAULT_STATE_CACHE_BYTES)?,
            },
        })
    }

    /// See [`DatabaseSettings::pool`].
    pub fn pool(&self) -> Result<PgPool, sqlx::Error> {
        self.database.pool()
    }

    /// Compiles every schema; an error names the file at fault.
    pub fn load_schemas(&self) -> Result<Arc<SchemaCatalog>, SchemaLoadError> {
        SchemaCatalog::load(self.schema_dir.as_deref()).map(Arc::new)
    }
}
