//! The read side's processes as an operator runs them, SIGKILLed over and over while
//! commands append: the real `vectis-projectors` and `vectis-relay` binaries, against
//! the real PostgreSQL and broker. After the last kill every read model must have
//! applied every stream up to its version in the event store within 10 s, and then equal
//! its fold, with every event applied once and nothing parked.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;
use vectis_command_api::handling::CommandHandler;
use vectis_test_support::{
    database_url, event_store,
    folds::{accounts_match_the_event_store, commerce_matches_the_event_store},
    fresh_topics,
    processes::{log_tail, KillSchedule as Schedule, Process},
    workloads::{account_workload, commerce_workload},
};

/// How long the read models may take to equal the fold after the last kill.
const CONVERGENCE: Duration = Duration::from_secs(10);

/// Streams whose version applied by their read model (accounts, inventory, orders)
/// differs from their version in the event store.
async fn streams_behind(pool: &PgPool) -> i64 {
    let mut behind = 0;
    for (projection, topic) in
        [("accounts", "vectis.accounts"), ("inventory", "vectis.inventory"), ("orders", "vectis.orders")]
    {
        let version: i32 = sqlx::query_scalar("SELECT active_version FROM projections WHERE name = $1")
            .bind(projection)
            .fetch_one(pool)
            .await
            .expect("installed");
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (SELECT stream_id, max(stream_version) AS version FROM events
                                    WHERE topic = $1 GROUP BY stream_id) e
               LEFT JOIN proj_{projection}_v{version}.stream_versions applied USING (stream_id)
              WHERE applied.version IS DISTINCT FROM e.version"
        ))
        .bind(topic)
        .fetch_one(pool)
        .await
        .expect("streams behind");
        behind += count;
    }
    behind
}

/// The processes under test, their environment and their logs.
struct ReadSide {
    env: Vec<(&'static str, String)>,
    logs: PathBuf,
    projectors: Option<Process>,
    relay: Option<Process>,
}

impl ReadSide {
    fn start(env: Vec<(&'static str, String)>, logs: PathBuf) -> Self {
        let mut side = Self { env, logs, projectors: None, relay: None };
        side.start_projectors();
        side.start_relay();
        side
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    fn start_projectors(&mut self) {
        self.projectors = Some(Process::start("vectis-projectors", &self.env, &self.log("vectis-projectors")));
    }

    fn start_relay(&mut self) {
        self.relay = Some(Process::start("vectis-relay", &self.env, &self.log("vectis-relay")));
    }

    fn logs_tail(&self) -> String {
        ["vectis-projectors", "vectis-relay"]
            .iter()
            .map(|name| format!("--- {name} (last lines)\n{}", log_tail(&self.log(name), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Accounts registered and moved through their states by `writers` writers until
/// `stop`, beside one run of the commerce workload (items, stock, reservations,
/// orders) over a first few of them.
async fn workload_until(
    handler: CommandHandler,
    writers: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<Uuid>, Vec<String>, Vec<Uuid>) {
    let mut accounts = account_workload(&handler, 20).await;
    let commerce = {
        let (handler, accounts) = (handler.clone(), accounts.clone());
        tokio::spawn(async move { commerce_workload(&handler, &accounts).await })
    };
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (handler, stop) = (handler.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                ids.extend(account_workload(&handler, 50).await);
            }
            ids
        }));
    }
    for task in tasks {
        accounts.extend(task.await.expect("writer"));
    }
    let (skus, orders) = commerce.await.expect("commerce workload");
    (accounts, skus, orders)
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn projectors_and_relay_sigkilled_twenty_times_converge_within_ten_seconds(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let database = pool.connect_options().get_database().expect("the test database").to_string();
    let logs = std::env::temp_dir().join(format!("vectis-kills-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log directory");
    println!("process logs in {}", logs.display());
    let env = vec![
        ("DATABASE_URL", database_url(&database).expect("database url")),
        ("KAFKA_BROKERS", kafka.brokers.clone()),
        ("VECTIS_TOPIC_PREFIX", kafka.naming.prefix().to_string()),
        ("VECTIS_DATA_DIR", logs.join("data").display().to_string()),
        ("PROJECTORS_OPS_ADDR", "127.0.0.1:0".into()),
        ("RELAY_OPS_ADDR", "127.0.0.1:0".into()),
        ("LOG_LEVEL", "info".into()),
        // As scripts/up runs it: a restarted process takes over its predecessor's place
        // in each group at once, instead of waiting for the dead member's session to end.
        ("PROJECTOR_INSTANCE_ID", "projectors-1".into()),
    ];
    let mut side = ReadSide::start(env, logs.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let handler = CommandHandler::new(event_store(pool.clone()));
    let workload = tokio::spawn(workload_until(handler.clone(), 4, stop.clone()));

    let mut schedule = Schedule::from_env();
    let kills = 24;
    let mut last_kill = Instant::now();
    for kill in 0..kills {
        tokio::time::sleep(schedule.millis(300, 1_800)).await;
        if kill + 1 == kills {
            // The last kill lands while the writers still append.
            stop.store(true, Ordering::Relaxed);
        }
        let (projectors, relay) = match schedule.draw() % 4 {
            0 => (false, true),
            1 => (true, true),
            _ => (true, false),
        };
        println!("kill {kill}: projectors {projectors}, relay {relay}");
        if projectors {
            side.projectors.take().expect("running").kill();
        }
        if relay {
            side.relay.take().expect("running").kill();
        }
        last_kill = Instant::now();
        tokio::time::sleep(schedule.millis(0, 1_000)).await;
        if projectors {
            side.start_projectors();
        }
        if relay {
            side.start_relay();
        }
    }
    let (accounts, skus, orders) = workload.await.expect("workload");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.expect("count");
    println!("{events} events appended while the processes were killed {kills} times");

    // Caught up when every stream's applied version is the event store's; then every
    // row must equal the fold (a full comparison takes seconds with this many streams,
    // so it runs once, on the caught-up read models).
    let mut behind = i64::MAX;
    while last_kill.elapsed() < CONVERGENCE {
        behind = streams_behind(&pool).await;
        if behind == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        behind == 0,
        "{behind} streams were not applied up to their version in the event store within {CONVERGENCE:?} of the \
         last kill\n{}",
        side.logs_tail()
    );
    println!("caught up {:?} after the last kill", last_kill.elapsed());
    accounts_match_the_event_store(&pool, &handler, &accounts).await.expect("the accounts equal the fold");
    commerce_matches_the_event_store(&pool, &handler, &skus, &orders)
        .await
        .expect("the items and orders equal the fold");
    let parked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projection_dead_letters").fetch_one(&pool).await.expect("parked");
    assert_eq!(parked, 0, "nothing parked");
    let tail = side.logs_tail();
    for process in [side.projectors.as_mut(), side.relay.as_mut()].into_iter().flatten() {
        assert!(process.is_running(), "process {} exited by itself:\n{tail}", process.pid());
    }
    std::fs::remove_dir_all(&logs).ok();
}
