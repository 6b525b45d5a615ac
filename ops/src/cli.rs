//! `vectis` subcommands. Each one turns its arguments into one library call and
//! prints the outcome; the work lives in the library crates.

use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use vectis_event_store::{
    kafka, settings::StoreSettings, AppendRequest, EventMetadata, EventStore, ExpectedVersion, NewEvent, RecordedEvent,
    StoreMetrics, MIGRATOR,
};
use vectis_projectors::republish;
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    rate_limit::{PolicyError, PolicyRow},
};
use vectis_schemas::{topics, SchemaCatalog, StreamId};

use crate::read_side::{self, DlqCommand, ProjectionsCommand, SearchCommand};

#[derive(Debug, Parser)]
#[command(name = "vectis", about = "Operate the Vectis event backbone", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the event store's database migrations (DATABASE_URL).
    Migrate,
    /// Topics of the event log on the broker (KAFKA_BROKERS, VECTIS_TOPIC_PREFIX).
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Event schemas.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Append and read events through the event store.
    #[command(subcommand)]
    Events(EventsCommand),
    /// API keys for the HTTP services (stored as SHA-256 hashes; a key is shown once).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Rate-limit policies of the HTTP services: a token bucket per client and
    /// endpoint. Running services apply changes at once, without a restart.
    #[command(subcommand, name = "rate-limits")]
    RateLimits(RateLimitsCommand),
    /// Read-model projections: status and lag, blue/green rebuild.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Events the projections parked (dead letters): list, show, retry, discard.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// The process managers' instances (workflows): list, show, retry or discard
    /// parked steps.
    #[command(subcommand)]
    Workflows(crate::workflows::WorkflowsCommand),
    /// Bulk import of items, prices or accounts from a CSV or NDJSON file: every row an
    /// ordinary command, many per transaction; re-running it appends nothing twice, and
    /// an interrupted one resumes.
    Import(crate::import::ImportArgs),
    /// Snapshots of aggregate state (SNAPSHOT_EVERY): status, purge.
    #[command(subcommand)]
    Snapshots(crate::snapshots::SnapshotsCommand),
    /// Search indexes (Meilisearch when MEILI_URL is set, else embedded): query,
    /// zero-downtime reindex.
    #[command(subcommand)]
    Search(SearchCommand),
    /// The relay, which copies the event store to the broker.
    #[command(subcommand)]
    Relay(RelayCommand),
    /// The event log's archive: Avro files on object storage, exported and verified.
    #[command(subcommand)]
    Archive(crate::archive::ArchiveCommand),
    /// The operator-actions trail: who did what to the log and its consumers, and why.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
}

#[derive(Debug, Subcommand)]
enum RelayCommand {
    /// After the broker lost the log (a new broker, recreated topics): publish every
    /// event again from the event store, and discard the projections' checkpoints of the
    /// old log so they read the new one from its start (skipping what they already
    /// applied). The relay and the projectors must be stopped; start them afterwards.
    Republish {
        /// The relay's name (RELAY_NAME of the relay process).
        #[arg(long, default_value = "default")]
        relay: String,
    },
}

#[derive(Debug, Subcommand)]
enum RateLimitsCommand {
    /// List policies: client, endpoint, burst capacity, refill per second, description.
    List,
    /// Create or replace the policy for a client and endpoint. The most specific policy
    /// governs a request: an address, then the narrowest CIDR block, then '*'; and a
    /// named endpoint before '*'.
    Set {
        /// '*', an address (203.0.113.7) or a CIDR block (10.0.0.0/8).
        #[arg(long, default_value = "*")]
        client: String,
        /// '*' or 'METHOD /route' as routed, e.g. 'POST /v1/orders' or 'POST /v1/orders/{id}/ship'.
        #[arg(long, default_value = "*")]
        endpoint: String,
        /// Largest burst: requests the bucket holds.
        #[arg(long)]
        capacity: u32,
        /// Sustained rate: requests per second added back.
        #[arg(long)]
        per_second: f64,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete the policy for a client and endpoint.
    Delete {
        #[arg(long, default_value = "*")]
        client: String,
        #[arg(long, default_value = "*")]
        endpoint: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it (only now: it cannot be shown again).
    Create {
        #[arg(long)]
        name: String,
        /// accounts:write, inventory:write, orders:write, read, admin (repeat for several).
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
    },
    /// List keys: id, name, scopes, created, revoked.
    List,
    /// Revoke a key by id.
    Revoke { id: uuid::Uuid },
    /// Replace the `development` admin key and print the new one (used by scripts/up).
    Dev,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the registry's missing topics; fail when a partition count differs.
    Ensure,
    /// Partition counts on the broker next to the registry.
    List,
    /// Print docs/REDPANDA_TOPICS.md, generated from the registry.
    Doc,
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Compile every schema (VECTIS_SCHEMA_DIR, or the built-in copy); fail naming a broken file.
    Check,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Append one event, validated against its schema. Prints the stored envelope.
    Append {
        /// Stream id, e.g. `order-0190a5b2-…`: its prefix must match the event's topic.
        #[arg(long)]
        stream: StreamId,
        /// Event type, e.g. `OrderConfirmed`.
        #[arg(long = "type")]
        event_type: String,
        /// Event data as a JSON object.
        #[arg(long)]
        data: String,
        /// `any`, `none` (the stream must not exist) or a version number.
        #[arg(long, default_value = "any")]
        expected_version: String,
    },
    /// Print a stream's events (upcast to current schema versions), one JSON per line.
    Read {
        #[arg(long)]
        stream: StreamId,
    },
    /// Print committed events after a global position, one JSON per line.
    Tail {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One stored event: its envelope, the headers and key the relay sends, and where
    /// it sits on its topic (partition and offset).
    Show {
        /// The event id (or `--stream` and `--version`).
        event_id: Option<uuid::Uuid>,
        #[arg(long, requires = "version", conflicts_with = "event_id")]
        stream: Option<StreamId>,
        #[arg(long, requires = "stream")]
        version: Option<i64>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Put one stored event back on its topic: the same key, value and headers, plus
    /// a `republished-at` header. Consumers skip it as a duplicate. Recorded in the
    /// operator-actions trail (`vectis audit list`).
    Republish {
        #[command(flatten)]
        which: crate::events::WhichEvent,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = || StoreSettings::from_env("vectis-cli").context("reading settings");
    match cli.command {
        Command::Migrate => {
            let settings = settings()?;
            let pool = settings.pool()?;
            MIGRATOR.run(&pool).await.context("applying migrations")?;
            println!("migrations applied");
        }
        Command::Topics(TopicsCommand::Doc) => print!("{}", topics::render_topics_markdown()),
        Command::Topics(TopicsCommand::Ensure) => {
            let report = kafka::provision_topics(&settings()?.kafka).await.context("provisioning topics")?;
            for topic in &report.created {
                println!("created  {topic}");
            }
            for topic in &report.already_present {
                println!("present  {topic}");
            }
            for m in &report.partition_mismatches {
                println!("MISMATCH {}: registry says {} partitions, broker has {}", m.topic, m.registry, m.broker);
            }
            if !report.is_consistent() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Topics(TopicsCommand::List) => {
            let settings = settings()?;
            let names = topics::TOPICS.iter().map(|t| settings.kafka.naming.physical(t.name)).collect();
            let found = kafka::partition_counts(&settings.kafka, names, std::time::Duration::from_secs(10)).await?;
            for spec in topics::TOPICS {
                let name = settings.kafka.naming.physical(spec.name);
                let on_broker = found.iter().find(|(n, _)| *n == name).map(|(_, p)| p.to_string());
                println!(
                    "{name}\tregistry={} broker={}",
                    spec.partitions,
                    on_broker.unwrap_or_else(|| "missing".into())
                );
            }
        }
        Command::Schemas(SchemasCommand::Check) => {
            let settings = settings()?;
            let catalog = SchemaCatalog::load(settings.schema_dir.as_deref())?;
            println!("{} schema files compile", catalog.len());
        }
        Command::Events(command) => return events(settings()?, command).await,
        Command::Keys(command) => return keys(ApiKeys::new(settings()?.pool()?), command).await,
        Command::RateLimits(command) => return rate_limits(&settings()?.pool()?, command).await,
        Command::Projections(command) => return read_side::projections(settings()?, command).await,
        Command::Dlq(command) => return read_side::dlq(&settings()?, command).await,
        Command::Search(command) => return read_side::search(settings()?, command).await,
        Command::Workflows(command) => return crate::workflows::workflows(settings()?, command).await,
        Command::Snapshots(command) => return crate::snapshots::snapshots(settings()?, command).await,
        Command::Import(args) => return crate::import::import(settings()?, args).await,
        Command::Archive(command) => return crate::archive::archive(settings()?, command).await,
        Command::Audit(command) => return crate::audit::audit(&settings()?.pool()?, command).await,
        Command::Relay(RelayCommand::Republish { relay }) => {
            let settings = settings()?;
            let done = republish::republish(&settings.pool()?, &settings.kafka, &relay).await?;
            println!(
                "relay {relay:?} rewound from global position {} to 0: it publishes every event again when it starts",
                done.relay_cursor_was
            );
            println!(
                "{} projection checkpoints of the old log discarded: projections read the new log from its start",
                done.checkpoints_discarded
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(settings: StoreSettings, command: EventsCommand) -> anyhow::Result<ExitCode> {
    let schemas: Arc<SchemaCatalog> = settings.load_schemas()?;
    let store = EventStore::new(settings.pool()?, schemas, settings.schema_mode, StoreMetrics::default());
    match command {
        EventsCommand::Append { stream, event_type, data, expected_version } => {
            let data = serde_json::from_str(&data).context("--data is not valid JSON")?;
            let expected = match expected_version.as_str() {
                "any" => ExpectedVersion::Any,
                "none" => ExpectedVersion::NoStream,
                n => ExpectedVersion::Exact(n.parse().context("--expected-version: any, none or a number")?),
            };
            let request = AppendRequest {
                stream_id: stream,
                expected,
                events: vec![NewEvent::new(event_type, data)],
                metadata: EventMetadata::default(),
            };
            match store.append(request).await {
                Ok(outcome) => print_events(&outcome.events, false)?,
                Err(e) if e.is_rejection() => {
                    eprintln!("rejected: {e}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
        EventsCommand::Read { stream } => print_events(&store.read_stream(&stream, 1).await?, true)?,
        EventsCommand::Tail { after, limit } => print_events(&store.read_all_committed(after, limit).await?, false)?,
        EventsCommand::Show { event_id, stream, version, json } => {
            let which = crate::events::WhichEvent { event_id, stream, version };
            return crate::events::show(&settings, &store, &which, json).await;
        }
        EventsCommand::Republish { which, reason } => {
            return crate::events::republish(&settings, &store, &which, &reason).await
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_events(events: &[RecordedEvent], upcast: bool) -> anyhow::Result<()> {
    for event in events {
        let envelope = if upcast { event.upcast()? } else { event.envelope.clone() };
        println!("{}", serde_json::to_string(&envelope)?);
    }
    Ok(())
}

async fn keys(keys: ApiKeys, command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create { name, scopes } => {
            let (id, key) = keys.create(&name, &scopes).await.context("creating the key")?;
            eprintln!("created key {id} ({name}); store it now, it is not shown again");
            println!("{key}");
        }
        KeysCommand::List => {
            for key in keys.list().await? {
                let revoked = key.revoked_at.map_or_else(|| "live".to_string(), |at| format!("revoked {at}"));
                println!("{}\t{}\t{}\tcreated {}\t{revoked}", key.id, key.name, key.scopes.join(","), key.created_at);
            }
        }
        KeysCommand::Revoke { id } => {
            if !keys.revoke(id).await? {
                eprintln!("no live key {id}");
                return Ok(ExitCode::from(2));
            }
            println!("revoked {id}");
        }
        KeysCommand::Dev => {
            keys.revoke_named(DEV_KEY_NAME).await?;
            let (_, key) = keys.create(DEV_KEY_NAME, &[Scope::Admin]).await?;
            println!("{key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn rate_limits(pool: &sqlx::PgPool, command: RateLimitsCommand) -> anyhow::Result<ExitCode> {
    match command {
        RateLimitsCommand::List => {
            println!("client\tendpoint\tcapacity\tper_second\tupdated\tdescription");
            for row in PolicyRow::list(pool).await.context("reading rate_limit_policies")? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    row.client, row.endpoint, row.capacity, row.refill_per_second, row.updated_at, row.description
                );
            }
        }
        RateLimitsCommand::Set { client, endpoint, capacity, per_second, description } => {
            match PolicyRow::set(pool, &client, &endpoint, capacity, per_second, &description).await {
                Ok(()) => println!("set ({client}, {endpoint}): {capacity} at once, {per_second}/s after"),
                Err(error @ PolicyError::Invalid { .. }) => {
                    eprintln!("refused: {error}");
                    return Ok(ExitCode::from(2));
                }
                Err(error) => return Err(error.into()),
            }
        }
        RateLimitsCommand::Delete { client, endpoint } => {
            if !PolicyRow::delete(pool, &client, &endpoint).await? {
                eprintln!("no policy for ({client}, {endpoint})");
                return Ok(ExitCode::from(2));
            }
            println!("deleted ({client}, {endpoint})");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The local stack's admin key; replaced on every `scripts/up`.
const DEV_KEY_NAME: &str = "development";
