//! `vectis projections` and `vectis dlq`: the read side's operations. Each subcommand is
//! one call into `vectis_projectors`; this module only parses and prints.

use std::{io::Write, process::ExitCode, sync::Arc, time::Duration};
use vectis_read_side::Target;

use anyhow::Context;
use clap::Subcommand;
use sqlx::PgPool;
use vectis_consumer::{
    dead_letters::{self, DeadLetterError},
    lag::{LagProbe, TOPIC_RECREATED_FIX},
    settings::ConsumerSettings,
};
use vectis_event_store::settings::StoreSettings;
use vectis_projectors::{
    process::all_projections,
    projection::Projection,
    rebuild::{self, Progress, RebuildError},
    search::{
        declaration::{Filter, SearchRequest, Sort},
        metrics::SearchMetrics,
        SearchEngine, SearchSettings,
    },
};
use vectis_runtime::Shutdown;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's versions: state, lag in events and seconds, parked events.
    Status,
    /// Rebuild a projection blue/green: build a new version from the earliest offset
    /// while the current one serves, switch readers once caught up, drop the old one.
    /// Interrupted (Ctrl-C), it resumes where it stopped when run again.
    Rebuild {
        /// accounts, inventory, orders, or a search index's projection
        /// (search_orders, search_accounts, search_products).
        name: String,
        #[command(flatten)]
        options: RebuildOptions,
    },
    /// Replay a projection from a global position or a time, blue/green like a rebuild:
    /// a new version starts with the log's state there (folded from the event store),
    /// replays the topics from the first record past it, and takes over once caught up.
    /// Recorded in the operator-actions trail (`vectis audit list`).
    Reset(crate::reset::ResetArgs),
}

/// How a rebuild runs (projections and workflows alike).
#[derive(Debug, Clone, clap::Args)]
pub struct RebuildOptions {
    /// Most records per batch.
    #[arg(long, default_value_t = 5000)]
    pub max_batch: usize,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2.0)]
    pub progress_every: f64,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Parked events, oldest first.
    List {
        #[arg(long)]
        projection: Option<String>,
        /// Include events already retried or discarded.
        #[arg(long)]
        all: bool,
    },
    /// One dead letter in full, with its payload.
    Show { id: i64 },
    /// Apply a parked event (once its cause is fixed) and the events of its stream
    /// parked behind it, in order.
    Retry { id: i64 },
    /// Give up on a parked event: it is never applied.
    Discard { id: i64 },
}

/// The search engine the projectors process uses, from the same environment.
pub fn search_engine(settings: &StoreSettings) -> anyhow::Result<SearchEngine> {
    Ok(SearchEngine::new(&SearchSettings::from_env(), settings.kafka.naming.prefix(), SearchMetrics::default())?)
}

fn all(settings: &StoreSettings) -> anyhow::Result<Vec<Arc<dyn Projection>>> {
    Ok(all_projections(&search_engine(settings)?))
}

fn projection_named(settings: &StoreSettings, name: &str) -> anyhow::Result<Arc<dyn Projection>> {
    let all = all(settings)?;
    let known: Vec<&str> = all.iter().map(|p| p.name()).collect::<Vec<_>>();
    let known = known.join(", ");
    all.into_iter().find(|p| p.name() == name).ok_or_else(|| anyhow::anyhow!("no projection {name:?}; known: {known}"))
}

pub async fn projections(settings: StoreSettings, command: ProjectionsCommand) -> anyhow::Result<ExitCode> {
    let pool = settings.pool()?;
    match command {
        ProjectionsCommand::Status => status(&pool, &settings).await,
        ProjectionsCommand::Rebuild { name, options } => {
            let projection = projection_named(&settings, &name)?;
            rebuild_to_the_end(&pool, &settings, projection, &options).await
        }
        ProjectionsCommand::Reset(args) => {
            let projection = projection_named(&settings, &args.name)?;
            crate::reset::reset(&pool, &settings, projection, &args).await
        }
    }
}

/// Runs a rebuild with progress lines until readers switched (exit 0) or Ctrl-C
/// (exit 130; running it again resumes).
pub async fn rebuild_to_the_end(
    pool: &PgPool,
    settings: &StoreSettings,
    projection: Arc<dyn Projection>,
    options: &RebuildOptions,
) -> anyhow::Result<ExitCode> {
    let RebuildOptions { max_batch, progress_every } = *options;
    anyhow::ensure!((1..=100_000).contains(&max_batch), "--max-batch must be 1 to 100000");
    anyhow::ensure!(progress_every >= 0.1, "--progress-every must be at least 0.1 s");
    let name = projection.name();
    let mut projector_settings = ConsumerSettings::new(settings.kafka.clone());
    projector_settings.max_batch = max_batch;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let outcome = rebuild::run(
        pool,
        projection,
        projector_settings,
        Duration::from_secs_f64(progress_every),
        print_progress,
        shutdown.wait(),
    )
    .await;
    match outcome {
        Ok(version) => {
            println!("{name}: readers now use version {version}; the old version is dropped");
            Ok(ExitCode::SUCCESS)
        }
        Err(error @ RebuildError::Interrupted(_)) => {
            eprintln!("{name}: {error}");
            Ok(ExitCode::from(130))
        }
        Err(error) => Err(error).context("rebuilding"),
    }
}

pub(crate) fn print_progress(progress: &Progress) {
    let eta = match progress.eta {
        Some(eta) => format!("{:.0}s", eta.as_secs_f64().ceil()),
        None if progress.events_left == 0 => "0s".into(),
        None => "unknown".into(),
    };
    println!(
        "{} v{}: {} events done, {} to go, {:.0} events/s, ETA {eta}, lag {:.1}s",
        progress.target.projection,
        progress.target.version,
        progress.events_done,
        progress.events_left,
        progress.events_per_second,
        progress.lag.seconds(),
    );
    let _ = std::io::stdout().flush();
}

async fn status(pool: &PgPool, settings: &StoreSettings) -> anyhow::Result<ExitCode> {
    let probe = LagProbe::new(&settings.kafka)?;
    let states = vectis_read_side::state::states(pool).await.context("reading projections")?;
    if states.is_empty() {
        println!("no projection installed yet: the projectors process installs them when it starts");
        return Ok(ExitCode::SUCCESS);
    }
    let mut code = ExitCode::SUCCESS;
    println!(
        "{:<16} {:>7}  {:<22} {:>10} {:>11} {:>7}",
        "projection", "version", "state", "lag_events", "lag_seconds", "parked"
    );
    for state in states {
        let Ok(projection) = projection_named(settings, &state.name) else {
            println!("{:<16} {:>7}  unknown to this build", state.name, state.active_version);
            continue;
        };
        let mut versions = vec![(state.active_version, "serving".to_string())];
        if let (Some(version), Some(started)) = (state.building_version, state.building_started_at) {
            versions.push((version, format!("rebuilding since {}", started.format("%H:%M:%S"))));
        }
        for (version, label) in versions {
            let target = Target { projection: projection.name(), version };
            let parked = vectis_read_side::state::parked_count(pool, &target).await?;
            let (events, seconds) = match probe.measure(pool, &target, projection.topics()).await {
                Ok(lag) => {
                    let beyond = lag.beyond_log();
                    if !beyond.is_empty() {
                        let partitions: Vec<String> = beyond
                            .iter()
                            .map(|p| {
                                format!(
                                    "{}/{} (checkpoint {}, end {})",
                                    p.topic, p.partition, p.next_offset, p.high_watermark
                                )
                            })
                            .collect();
                        eprintln!(
                            "{} v{version}: checkpoint beyond the end of {}: {TOPIC_RECREATED_FIX}",
                            state.name,
                            partitions.join(", ")
                        );
                        code = ExitCode::FAILURE;
                    }
                    (lag.events().to_string(), format!("{:.1}", lag.seconds()))
                }
                Err(error) => {
                    eprintln!("{}: cannot measure lag: {error}", state.name);
                    code = ExitCode::FAILURE;
                    ("?".into(), "?".into())
                }
            };
            println!("{:<16} {:>7}  {:<22} {:>10} {:>11} {:>7}", state.name, version, label, events, seconds, parked);
        }
    }
    Ok(code)
}

pub async fn dlq(settings: &StoreSettings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let pool = &settings.pool()?;
    let outcome = match command {
        DlqCommand::List { projection, all } => {
            let letters = dead_letters::list(pool, projection.as_deref(), all).await?;
            println!("id\tprojection\tversion\tstatus\ttopic/partition@offset\tstream\tstream_version\ttype\terror");
            for parked in letters {
                let l = &parked.letter;
                println!(
                    "{}\t{}\t{}\t{}\t{}/{}@{}\t{}\t{}\t{}\t{}",
                    parked.id,
                    parked.projection,
                    parked.version,
                    parked.status,
                    l.topic,
                    l.partition,
                    l.offset,
                    l.stream_id.as_deref().unwrap_or("-"),
                    l.stream_version.map_or_else(|| "-".into(), |v| v.to_string()),
                    l.event_type.as_deref().unwrap_or("-"),
                    l.error
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        DlqCommand::Show { id } => dead_letters::get(pool, id).await.map(|parked| {
            let l = &parked.letter;
            let payload = serde_json::from_slice::<serde_json::Value>(&l.payload)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| String::from_utf8_lossy(&l.payload).into_owned());
            println!("id:             {}", parked.id);
            println!("projection:     {} (version {})", parked.projection, parked.version);
            println!("record:         {}/{}@{}", l.topic, l.partition, l.offset);
            println!("stream:         {}", l.stream_id.as_deref().unwrap_or("-"));
            println!("stream version: {}", l.stream_version.map_or_else(|| "-".into(), |v| v.to_string()));
            println!("event type:     {}", l.event_type.as_deref().unwrap_or("-"));
            println!("status:         {}", parked.status);
            println!("parked at:      {}", parked.parked_at);
            if let Some(at) = parked.resolved_at {
                println!("resolved at:    {at}");
            }
            println!("error:          {}", l.error);
            println!("payload:\n{payload}");
        }),
        DlqCommand::Retry { id } => dead_letters::retry(pool, &all(settings)?, id).await.map(|outcome| {
            println!(
                "applied {}, already applied {}, still parked {}",
                outcome.applied, outcome.already_applied, outcome.still_parked
            );
            if let Some(error) = &outcome.error {
                println!("still failing: {error}");
            }
        }),
        DlqCommand::Discard { id } => dead_letters::discard(pool, id).await.map(|left| {
            println!("discarded {id}");
            if left > 0 {
                println!("{left} later events of its stream are still parked: retry or discard them too");
            }
        }),
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error @ DeadLetterError::Database(_)) => Err(error.into()),
        Err(error) => {
            eprintln!("refused: {error}");
            Ok(ExitCode::from(2))
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Search an index as the query side does: typo-tolerant, the last word as a
    /// prefix. Prints total, then one line per hit: id, highlights.
    Query {
        /// orders, accounts or products.
        index: String,
        /// Words to find; empty matches every document.
        #[arg(default_value = "")]
        text: String,
        /// field=value, field=a,b (any of), field>=n, field<=n; repeatable (AND).
        #[arg(long = "filter")]
        filters: Vec<String>,
        /// field or field:desc.
        #[arg(long)]
        sort: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Print the results as JSON (hits with their documents).
        #[arg(long)]
        json: bool,
    },
    /// Rebuild an index from the earliest offset beside the live one and switch
    /// readers to it once caught up (zero downtime); then drop the old one.
    Reindex {
        /// orders, accounts or products.
        index: String,
        #[command(flatten)]
        options: RebuildOptions,
    },
}

pub async fn search(settings: StoreSettings, command: SearchCommand) -> anyhow::Result<ExitCode> {
    let pool = settings.pool()?;
    let engine = search_engine(&settings)?;
    match command {
        SearchCommand::Query { index, text, filters, sort, limit, offset, json } => {
            let mut request = SearchRequest::new(text);
            request.filters = filters.iter().map(|f| Filter::parse(f)).collect::<Result<_, _>>()?;
            request.sort = sort.as_deref().map(Sort::parse).transpose()?.into_iter().collect();
            request.limit = limit;
            request.offset = offset;
            let results = engine.search(&pool, &index, &request).await?;
            let mut out = String::new();
            if json {
                out = serde_json::to_string_pretty(&results)? + "\n";
            } else {
                out.push_str(&format!("{} found\n", results.total));
                for hit in results.hits {
                    let highlights: Vec<String> =
                        hit.highlights.iter().map(|(field, text)| format!("{field}: {text}")).collect();
                    out.push_str(&format!("{}\t{}\n", hit.id, highlights.join("\t")));
                }
            }
            // Piped into `head`, the reader may leave early: that is not an error.
            match std::io::stdout().lock().write_all(out.as_bytes()) {
                Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        SearchCommand::Reindex { index, options } => {
            let declaration = vectis_projectors::search::declaration(&index)?;
            let projection = projection_named(&settings, declaration.projection.name)?;
            rebuild_to_the_end(&pool, &settings, projection, &options).await
        }
    }
}
