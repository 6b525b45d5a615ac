//! Every metric name and label key, in one place, so code, dashboards and alert rules
//! agree. prometheus-client appends `_total` to counters when it encodes them, so
//! counter constants here leave it off.

// Event store (producer side).
pub const EVENTS_APPENDED: &str = "vectis_events_appended";
pub const EVENT_SCHEMA_VIOLATIONS: &str = "vectis_event_schema_violations";
pub const APPEND_DURATION_SECONDS: &str = "vectis_append_duration_seconds";
pub const SNAPSHOT_HITS: &str = "vectis_snapshot_hits";
pub const SNAPSHOT_MISSES: &str = "vectis_snapshot_misses";
pub const SNAPSHOTS_WRITTEN: &str = "vectis_snapshots_written";
pub const SNAPSHOT_WRITE_FAILURES: &str = "vectis_snapshot_write_failures";
pub const AGGREGATE_EVENTS_FOLDED: &str = "vectis_aggregate_events_folded";
pub const STATE_CACHE_BYTES: &str = "vectis_state_cache_bytes";

// Relay.
pub const RELAY_EVENTS_PUBLISHED: &str = "vectis_relay_events_published";
pub const RELAY_BACKLOG_EVENTS: &str = "vectis_relay_backlog_events";
pub const RELAY_LAG_SECONDS: &str = "vectis_relay_lag_seconds";
pub const RELAY_IS_LEADER: &str = "vectis_relay_is_leader";
pub const RELAY_BATCH_DURATION_SECONDS: &str = "vectis_relay_batch_duration_seconds";
pub const RELAY_PUBLISH_FAILURES: &str = "vectis_relay_publish_failures";

// The archive job (in vectis-relay when ARCHIVE_URL is set).
pub const ARCHIVE_LAST_POSITION: &str = "vectis_archive_last_position";
pub const ARCHIVE_EVENTS_BEHIND: &str = "vectis_archive_events_behind";
pub const ARCHIVE_EVENTS_ARCHIVED: &str = "vectis_archive_events_archived";
pub const ARCHIVE_BYTES_WRITTEN: &str = "vectis_archive_bytes_written";
pub const ARCHIVE_FAILURES: &str = "vectis_archive_failures";
pub const ARCHIVE_LAST_SUCCESS: &str = "vectis_archive_last_success_timestamp_seconds";

// Projectors (label `projection`; lag also `topic`, `partition`).
pub const PROJECTION_EVENTS_APPLIED: &str = "vectis_projection_events_applied";
pub const PROJECTION_EVENTS_DUPLICATE: &str = "vectis_projection_events_skipped_duplicate";
pub const PROJECTION_EVENTS_PARKED: &str = "vectis_projection_events_parked";
pub const PROJECTION_BATCH_DURATION_SECONDS: &str = "vectis_projection_batch_duration_seconds";
pub const PROJECTION_LATENCY_SECONDS: &str = "vectis_projection_end_to_end_latency_seconds";
pub const PROJECTION_LAG_EVENTS: &str = "vectis_projection_lag_events";
pub const PROJECTION_LAG_SECONDS: &str = "vectis_projection_lag_seconds";
pub const PROJECTION_RETRIES: &str = "vectis_projection_transient_retries";
pub const PROJECTION_CHECKPOINT_BEYOND_LOG: &str = "vectis_projection_checkpoint_beyond_log";
pub const PROJECTION_SECONDS_SINCE_PROGRESS: &str = "vectis_projection_seconds_since_progress";
pub const PROJECTION_CONSUMER_REJOINS: &str = "vectis_projection_consumer_rejoins";

// Consumer groups measured from outside them, by the relay process (labels
// `projection`, `kind`, `group`; per partition also `topic`, `partition`).
pub const CONSUMER_LAG_EVENTS: &str = "vectis_consumer_lag_events";
pub const CONSUMER_CHECKPOINT_OFFSET: &str = "vectis_consumer_checkpoint_offset";
pub const CONSUMER_LOG_END_OFFSET: &str = "vectis_consumer_log_end_offset";
pub const CONSUMER_LAG_SECONDS: &str = "vectis_consumer_lag_seconds";
pub const CONSUMER_LAG_MEASURE_FAILURES: &str = "vectis_consumer_lag_measure_failures";

// Workflows (process managers), labelled by workflow.
pub const WORKFLOW_STEPS: &str = "vectis_workflow_steps";
pub const WORKFLOW_STEPS_FAILED: &str = "vectis_workflow_steps_failed";
pub const WORKFLOW_STEPS_PARKED: &str = "vectis_workflow_steps_parked";
pub const WORKFLOW_INSTANCES: &str = "vectis_workflow_instances";
pub const WORKFLOW_INSTANCES_STARTED: &str = "vectis_workflow_instances_started";
pub const WORKFLOW_INSTANCES_ENDED: &str = "vectis_workflow_instances_ended";
pub const WORKFLOW_OLDEST_RUNNING_SECONDS: &str = "vectis_workflow_oldest_running_seconds";
pub const WORKFLOW_TIMERS_PENDING: &str = "vectis_workflow_timers_pending";
pub const WORKFLOW_TIMERS_OVERDUE: &str = "vectis_workflow_timers_overdue";
pub const WORKFLOW_OLDEST_TIMER_OVERDUE_SECONDS: &str = "vectis_workflow_oldest_timer_overdue_seconds";
pub const WORKFLOW_OUTBOX_PENDING: &str = "vectis_workflow_outbox_pending";

// Label keys.
pub const LABEL_TOPIC: &str = "topic";
pub const LABEL_EVENT_TYPE: &str = "event_type";

// HTTP, as dashboards expect them (labels: method, route, status).
pub const HTTP_REQUESTS: &str = "http_requests";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_PROGRESS: &str = "http_requests_inprogress";
pub const HTTP_RESPONSE_SIZE_BYTES: &str = "http_response_size_bytes";
pub const HTTP_RATE_LIMITED: &str = "vectis_http_rate_limited";

// Readiness (label `dependency`), every process.
pub const DEPENDENCY_READY: &str = "vectis_dependency_ready";

// PostgreSQL connection pool.
pub const DB_POOL_IN_USE: &str = "vectis_db_pool_connections_in_use";
pub const DB_POOL_IDLE: &str = "vectis_db_pool_connections_idle";
pub const DB_POOL_MAX: &str = "vectis_db_pool_connections_max";

// Search projectors (label `index`).
pub const SEARCH_FRESHNESS_SECONDS: &str = "vectis_search_freshness_seconds";
pub const SEARCH_DOCUMENTS_INDEXED: &str = "vectis_search_documents_indexed";
pub const SEARCH_DOCUMENTS: &str = "vectis_search_documents";
