//! What every crate's tests share. It starts nothing: PostgreSQL and the broker come
//! from `scripts/test` (DATABASE_URL, KAFKA_BROKERS). Each test gets its own database
//! (`sqlx::test`) and its own topics (a random prefix); every wait has a deadline
//! ([`wait`]).
//!
//! - [`topics`]: a test's own topics; Kafka as an outside client sees it.
//! - [`store`]: the event store, the relay in a task, a test database's URL.
//! - [`http`]: a plain HTTP/1.1 client.
//! - [`wait`]: `eventually` and `until`, with deadlines.
//! - [`projectors`]: projectors in a task, waiting until they caught up.
//! - [`processes`]: the workspace's binaries as child processes (SIGKILL included).
//! - [`s3`]: a real S3 server (`rclone serve s3`), and a proxy that interrupts uploads.
//! - [`files`]: copies of directories for a test to damage.
//! - [`cli`]: the `vectis` CLI against a test's database.
//! - [`command_api`]: the command API's router in process, and a request sender.
//! - [`workloads`], [`shop`]: commands through the command handler.
//! - [`folds`]: read models compared with the fold of the event store.

pub mod cli;
pub mod command_api;
pub mod files;
pub mod folds;
pub mod http;
pub mod processes;
pub mod projectors;
pub mod s3;
pub mod shop;
pub mod store;
pub mod topics;
pub mod wait;
pub mod workloads;

pub use http::{http_get, http_request};
pub use projectors::{start_projector, until_caught_up};
pub use store::{database_url, event_store, RelayHandle};
pub use topics::{brokers, committed_offsets, fresh_topics, produce, recreate_topics, ConsumedRecord, TopicReader};
pub use wait::{eventually, until};
