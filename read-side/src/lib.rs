//! The read-side contract (DESIGN.md, "Layout"): what the projections write and the
//! query API reads, and nothing of how either does its work. No broker client, no
//! consumer runtime: `query-api` depends on this crate, not on `projectors`.
//!
//! - [`catalog`]: every projection by name, and the logical topics it reads.
//! - [`versions`]: a projection at one version and the schema holding its tables.
//! - [`status`]: the status words the read models store, as enums.
//! - [`state`]: which versions serve and build, parked events, the stream versions a
//!   projection applied ("has this write reached the read model?"), and the lag the
//!   projectors measured.
//! - [`workflows`]: the workflows' instances, timers and steps, as operators read them.

pub mod catalog;
pub mod state;
pub mod status;
pub mod versions;
pub mod workflows;

pub use catalog::ProjectionSpec;
pub use versions::{schema_name, version_of_schema, Target};
