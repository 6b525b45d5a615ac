//! `vectis events show` and `vectis events republish`: one stored event, where it sits
//! on its topic, and putting it back there (recorded in the operator-actions trail).

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use uuid::Uuid;
use vectis_event_store::{
    placement::{self, Placement, REPUBLISHED_AT},
    settings::StoreSettings,
    EventStore, RecordedEvent,
};
use vectis_schemas::StreamId;

use crate::audit;

/// Which stored event: by id, or by stream and version.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = true)]
pub struct WhichEvent {
    /// The event's id.
    #[arg(long, conflicts_with_all = ["stream", "version"])]
    pub event_id: Option<Uuid>,
    /// The event's stream (`order-0190a5b2-…`), with `--version`.
    #[arg(long, requires = "version")]
    pub stream: Option<StreamId>,
    /// Its version in the stream.
    #[arg(long, requires = "stream")]
    pub version: Option<i64>,
}

impl WhichEvent {
    fn describe(&self) -> String {
        match (&self.event_id, &self.stream, self.version) {
            (Some(id), _, _) => format!("event {id}"),
            (None, Some(stream), Some(version)) => format!("version {version} of {stream}"),
            _ => "no event".into(),
        }
    }

    async fn find(&self, store: &EventStore) -> anyhow::Result<Option<RecordedEvent>> {
        Ok(match (&self.event_id, &self.stream, self.version) {
            (Some(id), _, _) => store.find_event(*id).await?,
            (None, Some(stream), Some(version)) => store.find_stream_event(stream, version).await?,
            _ => None,
        })
    }
}

fn placement_text(placement: &Placement) -> String {
    match placement.offset {
        Some(offset) => format!("{} partition {} offset {offset}", placement.topic, placement.partition),
        None => format!(
            "{} partition {}: not there (not relayed yet, or the broker lost it)",
            placement.topic, placement.partition
        ),
    }
}

/// Prints the stored event, its envelope and headers, and its place on the topic.
pub async fn show(
    settings: &StoreSettings,
    store: &EventStore,
    which: &WhichEvent,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(event) = which.find(store).await? else {
        eprintln!("no {}", which.describe());
        return Ok(ExitCode::from(2));
    };
    let placement = placement::locate(&settings.kafka, &event).await.context("finding the event on its topic")?;
    let envelope = &event.envelope;
    let headers: Vec<(&str, String)> = envelope.headers(event.traceparent.as_deref());
    if as_json {
        let headers: serde_json::Map<String, serde_json::Value> =
            headers.into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
        let shown = json!({
            "envelope": envelope,
            "headers": headers,
            "topic": placement.topic,
            "partition": placement.partition,
            "offset": placement.offset,
        });
        println!("{}", serde_json::to_string_pretty(&shown)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("event     {} {} v{}", envelope.event_id, envelope.event_type, envelope.schema_version);
    println!("stream    {} version {}", envelope.stream_id, envelope.stream_version);
    println!("position  {} (occurred {})", envelope.global_position, envelope.occurred_at.to_rfc3339());
    println!("topic     {}", placement_text(&placement));
    println!("key       {}", envelope.stream_id);
    for (name, value) in headers {
        println!("header    {name}: {value}");
    }
    println!("envelope  {}", serde_json::to_string_pretty(envelope)?);
    Ok(ExitCode::SUCCESS)
}

/// Puts the stored event back on its topic, on record.
pub async fn republish(
    settings: &StoreSettings,
    store: &EventStore,
    which: &WhichEvent,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let Some(event) = which.find(store).await? else {
        eprintln!("no {}", which.describe());
        return Ok(ExitCode::from(2));
    };
    let pool = settings.pool()?;
    let envelope = &event.envelope;
    let details = json!({
        "stream_id": envelope.stream_id,
        "stream_version": envelope.stream_version,
        "global_position": envelope.global_position,
        "event_type": envelope.event_type,
    });
    let target = envelope.event_id.to_string();
    let record = audit::record(&pool, &audit::cli_actor(), "events.republish", &target, &details, reason).await?;
    let now = chrono::Utc::now();
    let outcome = placement::republish(&settings.kafka, &event, now).await.context("republishing");
    let landed = outcome.as_ref().ok().map(|p| json!({"topic": p.topic, "partition": p.partition, "offset": p.offset}));
    record.finish(&pool, &outcome, landed.as_ref()).await?;
    let placement = outcome?;
    println!(
        "republished {} ({} v{} of {}) to {} with {REPUBLISHED_AT}: {}",
        envelope.event_id,
        envelope.event_type,
        envelope.stream_version,
        envelope.stream_id,
        placement_text(&placement),
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    println!("consumers that applied it skip the copy as a duplicate; `vectis audit list` shows the action");
    Ok(ExitCode::SUCCESS)
}
