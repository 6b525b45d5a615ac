//! Read-side benchmark: prints figures, asserts nothing.
//!
//! In one run, from `BENCH_READ_EVENTS` (default 200,000) events appended through the
//! event store and relayed to fresh topics (every event type of every topic):
//! * catch-up: each projection's projector reading its topics from the beginning, next
//!   to a bare consumer (same client settings, its own group) that reads the same
//!   topics and writes nothing — the broker's ceiling;
//! * in memory: the same records applied by the projector runtime from memory in
//!   batches (decode, duplicate filter, set-based SQL, stream versions, checkpoints —
//!   the PostgreSQL-bound rate), next to the same runtime applying one record per
//!   transaction, as a per-message projector would;
//! * end to end: append → visible in the `read` views at a steady rate
//!   (`BENCH_E2E_RATE`, default 500 events/s, for `BENCH_E2E_SECONDS`, default 20).
//!
//! Run with `scripts/bench read-side`. While it runs, `vectis projections status`
//! against the database and topic prefix it prints shows the projectors' live lag.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use chrono::Utc;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::Message,
    Offset, TopicPartitionList,
};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;
use uuid::Uuid;
use vectis_benches::{
    append, create_database, drop_database, env_number, fill, projector_catch_up, CatchUp, Figures, BATCH,
};
use vectis_consumer::{
    event::decode,
    metrics::ConsumerMetrics,
    runtime::{GroupConsumer, Record},
    settings::{consumer_config, ConsumerSettings},
};
use vectis_event_store::{kafka::KafkaSettings, EventStore, NewEvent};
use vectis_projectors::{projection::Projection, read_models, store};
use vectis_read_side::Target;
use vectis_schemas::StreamId;
use vectis_schemas::{
    events::{
        AccountEvent, ApprovalThresholdChanged, CreditLimitChanged, InventoryEvent, Money, OrderApprovalRequested,
        OrderApproved, OrderCancelled, OrderDelivered, OrderEvent, OrderShipped, ReservationCommitted,
        ReservationReleased, StockAdjusted, StockReserved,
    },
    samples, EventEnvelope,
};
use vectis_test_support::{event_store, fresh_topics, RelayHandle};

fn account(event: impl Into<AccountEvent>) -> NewEvent {
    event.into().into()
}

fn inventory(event: impl Into<InventoryEvent>) -> NewEvent {
    event.into().into()
}

fn order(event: impl Into<OrderEvent>) -> NewEvent {
    event.into().into()
}

/// The streams of one workload unit: every event type the read models handle but the
/// rejections, in orders a real command flow produces.
fn unit_streams(unit: usize) -> Vec<(StreamId, Vec<NewEvent>)> {
    let eur = |minor| Money::new(minor, "EUR");
    let account_id = Uuid::now_v7();
    let sku = format!("BENCH-{unit:06}");
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    let (kept, released) = (Uuid::now_v7(), Uuid::now_v7());
    let account_events = vec![
        account(samples::account_registered(account_id, &format!("Bench buyer {unit}"))),
        account(samples::account_approved(account_id)),
        account(CreditLimitChanged {
            account_id,
            previous_credit_limit: eur(10_000_000),
            credit_limit: eur(20_000_000),
        }),
        account(ApprovalThresholdChanged {
            account_id,
            previous_approval_threshold: eur(1_000_000),
            approval_threshold: eur(2_000),
        }),
    ];
    let expires_at = Utc::now() + chrono::Duration::minutes(15);
    let inventory_events = vec![
        inventory(samples::item_created(&sku)),
        inventory(samples::stock_received(&sku, 100)),
        inventory(StockReserved { sku: sku.clone(), reservation_id: kept, order_id: first, quantity: 2, expires_at }),
        inventory(ReservationCommitted { sku: sku.clone(), reservation_id: kept, order_id: first, quantity: 2 }),
        inventory(StockReserved {
            sku: sku.clone(),
            reservation_id: released,
            order_id: second,
            quantity: 3,
            expires_at,
        }),
        inventory(ReservationReleased {
            sku: sku.clone(),
            reservation_id: released,
            order_id: second,
            quantity: 3,
            reason: Some("order cancelled".into()),
        }),
        inventory(StockAdjusted {
            sku: sku.clone(),
            delta: -1,
            reason: vectis_schemas::events::AdjustmentReason::Damaged,
            note: None,
        }),
        inventory(samples::stock_received(&sku, 50)),
    ];
    let shipped = vec![
        order(samples::order_placed(first, account_id, &sku, 2)),
        order(samples::order_confirmed(first)),
        order(OrderShipped { order_id: first, carrier: "DHL".into(), tracking_number: format!("TRK{unit}") }),
        order(OrderDelivered { order_id: first }),
    ];
    let cancelled = vec![
        order(samples::order_placed(second, account_id, &sku, 3)),
        order(OrderApprovalRequested {
            order_id: second,
            account_id,
            total: eur(3_750),
            approval_threshold: eur(2_000),
        }),
        order(OrderApproved { order_id: second, approved_by: "staff:bench".into() }),
        order(OrderCancelled { order_id: second, reason: "customer changed their mind".into() }),
    ];
    vec![
        (StreamId::account(account_id), account_events),
        (StreamId::inventory_item(&sku).expect("a SKU"), inventory_events),
        (StreamId::order(first), shipped),
        (StreamId::order(second), cancelled),
    ]
}

/// A consumer with the projector's client settings, in a group of its own.
fn bare_consumer(kafka: &KafkaSettings, topics: &[&str]) -> anyhow::Result<BaseConsumer> {
    let group = format!("{}bench.bare.{}", kafka.naming.prefix(), Uuid::new_v4().simple());
    let consumer: BaseConsumer = consumer_config(&ConsumerSettings::new(kafka.clone()), &group).create()?;
    let physical: Vec<String> = topics.iter().map(|t| kafka.naming.physical(t)).collect();
    consumer.subscribe(&physical.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(consumer)
}

/// Reads every record of `topics` (`expected` in all) and keeps them: the ceiling's
/// figure and the in-memory phase's input.
async fn bare_catch_up(
    kafka: &KafkaSettings,
    topics: &'static [&'static str],
    expected: usize,
) -> anyhow::Result<(CatchUp, Vec<Record>)> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let consumer = bare_consumer(&kafka, topics)?;
        let mut records = Vec::with_capacity(expected);
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut first_batch = None;
        while records.len() < expected {
            anyhow::ensure!(Instant::now() < deadline, "only {} of {expected} records arrived", records.len());
            // As the projector polls: wait for one record, then take what is fetched.
            let mut timeout = Duration::from_millis(100);
            let before = records.len();
            while records.len() - before < BATCH {
                match consumer.poll(timeout) {
                    None => break,
                    Some(message) => {
                        let message = message?;
                        records.push(Record {
                            topic: message.topic().to_string(),
                            partition: message.partition(),
                            offset: message.offset(),
                            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                            payload: message.payload().unwrap_or_default().to_vec(),
                        });
                    }
                }
                timeout = Duration::ZERO;
            }
            if first_batch.is_none() && !records.is_empty() {
                first_batch = Some((records.len() as i64, Instant::now()));
            }
        }
        let (first, since) = first_batch.context("no records")?;
        Ok((CatchUp { events: records.len() as i64, first_batch: first, steady: since.elapsed() }, records))
    })
    .await?
}

/// Applies `records` from memory in batches of `batch` through the projector runtime,
/// into a database of its own; returns records per second.
async fn apply_from_memory(
    kafka: &KafkaSettings,
    projection: Arc<dyn Projection>,
    records: &[Record],
    batch: usize,
) -> anyhow::Result<f64> {
    let (pool, database) = create_database(4).await?;
    let outcome = async {
        let version = store::install(&pool, projection.as_ref()).await?;
        let projector = GroupConsumer::new(
            pool.clone(),
            projection,
            version,
            ConsumerSettings::new(kafka.clone()),
            ConsumerMetrics::default(),
        );
        let started = Instant::now();
        for chunk in records.chunks(batch) {
            projector.apply_batch(chunk, false).await?;
        }
        anyhow::Ok(records.len() as f64 / started.elapsed().as_secs_f64())
    }
    .await;
    pool.close().await;
    drop_database(&database).await?;
    outcome
}

/// Applies `records` with the projection's own SQL called once per event, in
/// transactions of [`BATCH`] events (no runtime bookkeeping, which only favours it):
/// row-at-a-time statements against the set-based batch; returns records per second.
async fn apply_row_statements(
    kafka: &KafkaSettings,
    projection: Arc<dyn Projection>,
    records: &[Record],
) -> anyhow::Result<f64> {
    let (pool, database) = create_database(4).await?;
    let outcome = async {
        let version = store::install(&pool, projection.as_ref()).await?;
        let schema = Target { projection: projection.name(), version }.schema();
        let prefix = kafka.naming.prefix();
        let started = Instant::now();
        for chunk in records.chunks(BATCH) {
            let mut tx = vectis_runtime::database::begin(&pool).await?;
            for record in chunk {
                let topic = record.topic.strip_prefix(prefix).unwrap_or(&record.topic);
                let event = decode(topic, record.key.as_deref(), &record.payload)?;
                projection.apply(&mut tx, &schema, std::slice::from_ref(&event)).await?;
            }
            tx.commit().await?;
        }
        anyhow::Ok(records.len() as f64 / started.elapsed().as_secs_f64())
    }
    .await;
    pool.close().await;
    drop_database(&database).await?;
    outcome
}

/// One appended event awaiting its row in a `read` view.
struct Pending {
    view: View,
    id: String,
    position: i64,
    committed: Instant,
    /// The same moment by the wall clock, to compare with record timestamps.
    committed_at: SystemTime,
}

/// See the visibility polling in [`end_to_end`].
const VISIBILITY_POLL_PAUSE: Duration = Duration::from_millis(2);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum View {
    Accounts,
    InventoryItems,
    Orders,
}

/// One polling round in one statement: the relay's cursor (it moves once the broker
/// has acknowledged every record up to it), and which of the ids waiting in each view
/// (`$1` accounts, `$2` inventory items, `$3` orders) have their row. Each id is
/// matched by the primary key, and the ids are cast rather than the column. The
/// polling runs on a connection of its own that plans only index probes: the planner
/// takes the ids for a handful and would hash (or scan) whole tables each round, and
/// the polling must not spend the CPU it measures.
const POLL: &str = "\
    SELECT NULL::text, coalesce(max(global_position), 0) FROM relay_cursors
    UNION ALL
    SELECT w.id, NULL FROM unnest($1::text[]) AS w(id) JOIN read.accounts r ON r.account_id = w.id::uuid
    UNION ALL
    SELECT w.id, NULL FROM unnest($2::text[]) AS w(id) JOIN read.inventory_items r ON r.sku = w.id
    UNION ALL
    SELECT w.id, NULL FROM unnest($3::text[]) AS w(id) JOIN read.orders r ON r.order_id = w.id::uuid";

struct EndToEnd {
    appends: Figures,
    on_topic: Figures,
    sent: Figures,
    read_by_probe: Figures,
    visible: Figures,
}

/// What the probe saw of one event: its position, when the relay handed it to the
/// producer (the record's timestamp) and when the probe read it.
struct Probed {
    position: i64,
    sent_at: SystemTime,
    read_at: SystemTime,
}

/// A bare consumer reading every partition from its end (assigned, outside any group)
/// while the end-to-end run goes on: where between the relay and the projectors the
/// time goes. Returns once positioned; the task yields what it read after `stop`.
async fn start_probe(
    kafka: &KafkaSettings,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Vec<Probed>>>> {
    let group = format!("{}bench.probe.{}", kafka.naming.prefix(), Uuid::new_v4().simple());
    let consumer: BaseConsumer = consumer_config(&ConsumerSettings::new(kafka.clone()), &group).create()?;
    let kafka = kafka.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let mut at_end = TopicPartitionList::new();
        for spec in vectis_schemas::TOPICS {
            let topic = kafka.naming.physical(spec.name);
            for partition in 0..spec.partitions {
                let (_, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10))?;
                at_end.add_partition_offset(&topic, partition, Offset::Offset(high))?;
            }
        }
        consumer.assign(&at_end)?;
        anyhow::Ok(consumer)
    })
    .await??;
    Ok(tokio::task::spawn_blocking(move || {
        let mut probed = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Some(message) = consumer.poll(Duration::from_millis(50)) else { continue };
            let message = message?;
            let read_at = SystemTime::now();
            let envelope = EventEnvelope::from_json_bytes(message.payload().unwrap_or_default())?;
            let sent_ms = message.timestamp().to_millis().context("a record without a timestamp")?;
            probed.push(Probed {
                position: envelope.global_position,
                sent_at: UNIX_EPOCH + Duration::from_millis(sent_ms.max(0) as u64),
                read_at,
            });
        }
        Ok(probed)
    }))
}

/// Appends one row-creating event per tick at `rate`/s, rotating over the three
/// topics, while every projector and the relay run; measures commit → visible.
async fn end_to_end(
    pool: &PgPool,
    store: &EventStore,
    kafka: &KafkaSettings,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<EndToEnd> {
    let metrics = ConsumerMetrics::default();
    let mut running = Vec::new();
    for projection in read_models::all() {
        let version = store::install(pool, projection.as_ref()).await?;
        running.push(
            GroupConsumer::new(
                pool.clone(),
                projection,
                version,
                ConsumerSettings::new(kafka.clone()),
                metrics.clone(),
            )
            .start()?,
        );
    }
    let relay = RelayHandle::start(pool.clone(), kafka, 1000);
    // Let the groups settle before the clock starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stop_probe = Arc::new(AtomicBool::new(false));
    let probe = start_probe(kafka, stop_probe.clone()).await?;
    let total = (rate * seconds) as usize;

    let (sent, mut received) = mpsc::unbounded_channel::<(Pending, Duration)>();
    let generator = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let started = Instant::now();
            let mut appends = Vec::with_capacity(total);
            for n in 0..total {
                ticker.tick().await;
                let (store, sent) = (store.clone(), sent.clone());
                appends.push(tokio::spawn(async move {
                    let (view, id, stream, event) = match n % 3 {
                        0 => {
                            let id = Uuid::now_v7();
                            let event = account(samples::account_registered(id, "Latency probe"));
                            (View::Accounts, id.to_string(), StreamId::account(id), event)
                        }
                        1 => {
                            let sku = format!("E2E-{n:07}");
                            let event = inventory(samples::item_created(&sku));
                            (View::InventoryItems, sku.clone(), StreamId::inventory_item(&sku).expect("a SKU"), event)
                        }
                        _ => {
                            let id = Uuid::now_v7();
                            let event = order(samples::order_placed(id, Uuid::from_u128(1), "E2E", 1));
                            (View::Orders, id.to_string(), StreamId::order(id), event)
                        }
                    };
                    let asked = Instant::now();
                    let position = append(&store, stream, vec![event]).await?;
                    let (committed, committed_at) = (Instant::now(), SystemTime::now());
                    let _ = sent.send((Pending { view, id, position, committed, committed_at }, committed - asked));
                    anyhow::Ok(())
                }));
            }
            for append in appends {
                append.await??;
            }
            anyhow::Ok(started.elapsed())
        })
    };

    let mut pending: HashMap<View, Vec<Pending>> = HashMap::new();
    let mut polling = PgConnection::connect_with(&pool.connect_options()).await?;
    for setting in ["enable_hashjoin", "enable_mergejoin"] {
        sqlx::query(&format!("SET {setting} = off")).execute(&mut polling).await?;
    }
    let mut visible = Vec::with_capacity(total);
    let mut append_latencies = Vec::with_capacity(total);
    // Committed, not yet acknowledged by the broker: (position, committed at).
    let mut unacknowledged = std::collections::VecDeque::new();
    let mut on_topic = Vec::with_capacity(total);
    let mut committed_at = HashMap::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    while visible.len() < total {
        anyhow::ensure!(Instant::now() < deadline, "only {} of {total} events became visible", visible.len());
        while let Ok((item, append_latency)) = received.try_recv() {
            append_latencies.push(append_latency);
            committed_at.insert(item.position, item.committed_at);
            unacknowledged.push_back((item.position, item.committed));
            pending.entry(item.view).or_default().push(item);
        }
        let waiting = |view| pending.get(&view).map_or_else(Vec::new, |w| w.iter().map(|p| p.id.clone()).collect());
        let rows: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(POLL)
            .bind(waiting(View::Accounts))
            .bind(waiting(View::InventoryItems))
            .bind(waiting(View::Orders))
            .fetch_all(&mut polling)
            .await?;
        let cursor = rows.iter().find_map(|(_, cursor)| *cursor).unwrap_or(0);
        let found: HashSet<String> = rows.into_iter().filter_map(|(id, _)| id).collect();
        let now = Instant::now();
        unacknowledged.make_contiguous().sort_unstable_by_key(|(position, _)| *position);
        while let Some((_, committed)) = unacknowledged.front().filter(|(position, _)| *position <= cursor) {
            on_topic.push(now - *committed);
            unacknowledged.pop_front();
        }
        let now = Instant::now();
        for waiting in pending.values_mut() {
            waiting.retain(|p| {
                let seen = found.contains(&p.id);
                if seen {
                    visible.push(now - p.committed);
                }
                !seen
            });
        }
        // A pause between rounds, so the polling leaves the CPU to what it measures; a
        // row is seen at most this much (and one round) after it became visible.
        tokio::time::sleep(VISIBILITY_POLL_PAUSE).await;
    }
    let generating = generator.await??;
    on_topic.extend(unacknowledged.iter().map(|(_, committed)| committed.elapsed()));
    stop_probe.store(true, Ordering::Relaxed);
    let probed = probe.await??;
    let since_commit = |at: SystemTime, position: i64| {
        committed_at.get(&position).map(|committed| at.duration_since(*committed).unwrap_or_default())
    };
    let sent: Vec<Duration> = probed.iter().filter_map(|p| since_commit(p.sent_at, p.position)).collect();
    let read_by_probe: Vec<Duration> = probed.iter().filter_map(|p| since_commit(p.read_at, p.position)).collect();
    relay.stop().await;
    for projector in running {
        projector.stop().await?;
    }
    Ok(EndToEnd {
        appends: Figures::new(total, generating, append_latencies),
        on_topic: Figures::new(on_topic.len(), generating, on_topic),
        sent: Figures::new(sent.len(), generating, sent),
        read_by_probe: Figures::new(read_by_probe.len(), generating, read_by_probe),
        visible: Figures::new(total, generating, visible),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Quiet unless LOG_LEVEL asks, e.g. LOG_LEVEL=vectis_event_store=debug to follow the relay.
    vectis_runtime::telemetry::init_tracing(vectis_runtime::Environment::Development, "warn")?;
    let wanted = env_number("BENCH_READ_EVENTS", 200_000) as usize;
    let units = wanted.div_ceil(unit_streams(0).iter().map(|(_, events)| events.len()).sum());
    let (pool, database) = create_database(20).await?;
    let kafka = fresh_topics().await?;
    println!("# Vectis read-side benchmark");
    println!(
        "PostgreSQL database {database}; broker {}; topic prefix {}",
        vectis_test_support::brokers(),
        kafka.naming.prefix()
    );
    println!(
        "Live lag from another terminal: DATABASE_URL={} KAFKA_BROKERS={} VECTIS_TOPIC_PREFIX={} vectis projections status",
        vectis_test_support::database_url(&database)?,
        vectis_test_support::brokers(),
        kafka.naming.prefix()
    );
    let outcome = run(&pool, &kafka, units).await;
    pool.close().await;
    drop_database(&database).await?;
    outcome
}

async fn run(pool: &PgPool, kafka: &KafkaSettings, units: usize) -> anyhow::Result<()> {
    let store = event_store(pool.clone());
    println!("\n## Fill");
    fill(pool, &store, kafka, units, unit_streams).await?;

    println!(
        "\n## Catch-up from the earliest offset (steady rate: first batch to last event; \
         the bare consumer reads before and after the projector, the faster read counts)"
    );
    let mut in_memory_input = Vec::new();
    let mut rows = Vec::new();
    for projection in read_models::all() {
        let expected = units * events_per_unit_on(projection.topics());
        // The bare consumer reads before and after the projector, so neither reader
        // has the broker's caches to itself; the faster read is the ceiling.
        let (before, records) = bare_catch_up(kafka, projection.topics(), expected).await?;
        let projector = projector_catch_up(pool, kafka, projection.clone(), expected as i64).await?;
        let (after, _) = bare_catch_up(kafka, projection.topics(), expected).await?;
        let bare = if before.per_second() >= after.per_second() { before } else { after };
        rows.push((projection.name(), projector, bare));
        in_memory_input.push((projection, records));
    }
    println!("| projection | events | projector events/s | bare consumer events/s | projector / bare |");
    println!("|---|---|---|---|---|");
    for (name, projector, bare) in &rows {
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} % |",
            projector.events,
            projector.per_second(),
            bare.per_second(),
            100.0 * projector.per_second() / bare.per_second()
        );
    }

    let row_sample = env_number("BENCH_ROW_SAMPLE", 5_000) as usize;
    println!(
        "\n## Apply from memory (each projection into an empty database; the row-at-a-time columns on the first \
         {row_sample} of the same records)"
    );
    println!("- set-based: the projector runtime, {BATCH} events per transaction (decode, duplicate filter, the projection's set-based SQL, stream versions, checkpoints)");
    println!(
        "- row statements: the projection's SQL called once per event, {BATCH} events per transaction, no bookkeeping"
    );
    println!("- row transactions: the projector runtime, one event per transaction (a per-message projector)");
    println!("| projection | events | set-based events/s | row statements events/s | row transactions events/s | set-based / row statements | set-based / row transactions |");
    println!("|---|---|---|---|---|---|---|");
    for (projection, records) in &in_memory_input {
        let batched = apply_from_memory(kafka, projection.clone(), records, BATCH).await?;
        let sample = &records[..row_sample.min(records.len())];
        let statements = apply_row_statements(kafka, projection.clone(), sample).await?;
        let transactions = apply_from_memory(kafka, projection.clone(), sample, 1).await?;
        println!(
            "| {} | {} | {batched:.0} | {statements:.0} | {transactions:.0} | {:.1}× | {:.1}× |",
            projection.name(),
            records.len(),
            batched / statements,
            batched / transactions
        );
    }

    let (rate, seconds) = (env_number("BENCH_E2E_RATE", 500), env_number("BENCH_E2E_SECONDS", 20));
    println!(
        "\n## End to end at a steady {rate} events/s for {seconds} s \
         (append committed → row visible in read.*; relay and all projectors running)"
    );
    let figures = end_to_end(pool, &store, kafka, rate, seconds).await?;
    println!("| path | events | achieved events/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for (path, figures) in [
        ("append call (event store)", &figures.appends),
        ("committed → handed to the producer by the relay (record timestamp, ms resolution)", &figures.sent),
        ("committed → acknowledged by the broker (relay cursor)", &figures.on_topic),
        ("committed → read by a bare consumer (assigned every partition at its end)", &figures.read_by_probe),
        ("committed → visible in read.* (relay + projector)", &figures.visible),
    ] {
        println!(
            "| {path} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            figures.operations,
            figures.per_second(),
            figures.percentile_ms(0.5),
            figures.percentile_ms(0.99),
            figures.percentile_ms(1.0)
        );
    }
    Ok(())
}

/// How many of a unit's events land on `topics`.
fn events_per_unit_on(topics: &[&str]) -> usize {
    unit_streams(0)
        .iter()
        .flat_map(|(_, events)| events)
        .filter_map(|event| vectis_schemas::topics::topic_for_event_type(&event.event_type))
        .filter(|topic| topics.contains(&topic.name))
        .count()
}
