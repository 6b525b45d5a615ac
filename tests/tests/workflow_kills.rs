//! The real `vectis-workflows` binary SIGKILLed at random while 200 orders flow and
//! are confirmed, shipped and cancelled: afterwards every order agrees with the
//! inventory fold, every line was reserved (or refused) exactly once, no command
//! appended twice, nothing is left pending or parked; a recurring order running every
//! second through the kills places exactly one order per run; and a deadline that
//! passed while the process was down fires once after its restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;
use vectis_command_api::domain::{
    AccountCommand, InventoryItem, Order, OrderCommand, OrderStatus, RecurringOrderCommand, Schedule,
};
use vectis_event_store::EventMetadata;
use vectis_schemas::{events::RecurringLine, StreamId};
use vectis_test_support::{
    database_url, eventually, fresh_topics,
    processes::{log_tail, KillSchedule, Process},
    shop::Shop,
    RelayHandle,
};

const SKUS: usize = 5;
const STOCK: i64 = 80;
const ORDERS: usize = 200;
/// Runs of the recurring order placed every second through the kills.
const RECURRING_RUNS: i64 = 15;
/// The approval deadline of the order placed to wait out a downtime.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(4);

struct Workflows {
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    process: Option<Process>,
}

impl Workflows {
    fn start(&mut self) {
        self.process = Some(Process::start("vectis-workflows", &self.env, &self.log));
    }

    fn kill(&mut self) {
        self.process.take().expect("running").kill();
    }

    fn tail(&self) -> String {
        log_tail(&self.log, 40)
    }
}

fn sku(index: usize) -> String {
    format!("KILL-{index}")
}

/// What the orders placed so far are, and which the driver acted on.
#[derive(Default)]
struct Placed {
    lines: BTreeMap<Uuid, Vec<(String, i64)>>,
    acted: BTreeSet<Uuid>,
}

/// Places the orders, paced, each of one or two lines of 1 to 4 units.
async fn place_orders(shop: Arc<Shop>, account: Uuid, placed: Arc<Mutex<Placed>>, seed: u64) {
    let mut random = KillSchedule::seeded(seed);
    for _ in 0..ORDERS {
        let first = (random.draw() % SKUS as u64) as usize;
        let mut lines = vec![(sku(first), 1 + (random.draw() % 4) as i64)];
        if random.draw() % 2 == 0 {
            lines.push((sku((first + 1) % SKUS), 1 + (random.draw() % 4) as i64));
        }
        let borrowed: Vec<(&str, i64)> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let order = shop.order(account, &borrowed, vec![]).await;
        placed.lock().expect("placed").lines.insert(order, lines);
        // About as long as the kills take: orders flow across every one of them.
        tokio::time::sleep(random.millis(40, 130)).await;
    }
}

/// Acts on orders once their stock is held, as a buyer and the warehouse would: a
/// third confirmed and shipped, a third cancelled, a third left confirmable.
async fn drive(shop: Arc<Shop>, placed: Arc<Mutex<Placed>>, until: Arc<tokio::sync::Notify>) {
    let metadata = EventMetadata::default();
    loop {
        let waiting: Vec<Uuid> = {
            let placed = placed.lock().expect("placed");
            placed.lines.keys().filter(|id| !placed.acted.contains(id)).copied().collect()
        };
        for order_id in waiting {
            let stream = StreamId::order(order_id);
            let order = shop.handler.load::<Order>(&stream).await.expect("order").state.expect("placed");
            if order.status != OrderStatus::Confirmable {
                if order.status != OrderStatus::Placed {
                    placed.lock().expect("placed").acted.insert(order_id);
                }
                continue;
            }
            let commands = match order_id.as_u128() % 3 {
                0 => vec![
                    OrderCommand::Confirm,
                    OrderCommand::Ship { carrier: "DHL".into(), tracking_number: order_id.to_string() },
                ],
                1 => vec![OrderCommand::Cancel { reason: "changed mind".into() }],
                _ => vec![],
            };
            let mut store = shop.handler.store().clone();
            for command in commands {
                // A refusal is an answer too (the order moved on meanwhile).
                let _ =
                    shop.handler.execute::<Order, _>(&mut store, &stream, None, &metadata, |_| command.clone()).await;
            }
            placed.lock().expect("placed").acted.insert(order_id);
        }
        let done = placed.lock().map(|p| p.lines.len() == ORDERS && p.acted.len() == ORDERS).unwrap_or(false);
        if done {
            return;
        }
        tokio::select! {
            () = until.notified() => return,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Whether the orders, the inventory fold and the outbox agree; `Err` says how not.
async fn agreement(pool: &PgPool, shop: &Shop, placed: &Placed) -> Result<(), String> {
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM workflow_outbox WHERE status NOT IN ('done', 'refused')")
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?;
    if pending > 0 {
        return Err(format!("{pending} steps not run"));
    }
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    let mut shipped: BTreeMap<String, i64> = BTreeMap::new();
    for (order_id, lines) in &placed.lines {
        let order = shop.handler.load::<Order>(&StreamId::order(*order_id)).await.map_err(|e| e.to_string())?;
        let status = order.state.expect("placed").status;
        let tally = match status {
            OrderStatus::Placed => return Err(format!("order {order_id} is still placed")),
            OrderStatus::Confirmable | OrderStatus::Confirmed => &mut held,
            OrderStatus::Shipped | OrderStatus::Delivered => &mut shipped,
            _ => continue,
        };
        for (sku, quantity) in lines {
            *tally.entry(sku.clone()).or_default() += quantity;
        }
    }
    for index in 0..SKUS {
        let sku = sku(index);
        let item = shop.handler.load::<InventoryItem>(&StreamId::inventory_item(&sku).expect("sku")).await;
        let item = item.map_err(|e| e.to_string())?.state.expect("item");
        let expected = (STOCK - shipped.get(&sku).copied().unwrap_or(0), held.get(&sku).copied().unwrap_or(0));
        if (item.on_hand, item.reserved()) != expected {
            return Err(format!(
                "{sku}: on hand {}, reserved {} by the fold; the orders say {expected:?}",
                item.on_hand,
                item.reserved()
            ));
        }
        assert!(item.on_hand - item.reserved() >= 0, "{sku} oversold");
    }
    Ok(())
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn the_workflows_process_sigkilled_at_random_loses_nothing_and_repeats_nothing(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let relay = RelayHandle::start(pool.clone(), &kafka, 500);
    let database = pool.connect_options().get_database().expect("the test database").to_string();
    let logs = std::env::temp_dir().join(format!("vectis-workflow-kills-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log directory");
    println!("process log in {}", logs.display());
    let env = vec![
        ("DATABASE_URL", database_url(&database).expect("database url")),
        ("KAFKA_BROKERS", kafka.brokers.clone()),
        ("VECTIS_TOPIC_PREFIX", kafka.naming.prefix().to_string()),
        ("WORKFLOWS_OPS_ADDR", "127.0.0.1:0".into()),
        ("WORKFLOW_INSTANCE_ID", "workflows-1".into()),
        ("WORKFLOW_TIMER_POLL", "100ms".into()),
        ("ORDER_APPROVAL_TIMEOUT", format!("{}s", APPROVAL_TIMEOUT.as_secs())),
        ("ACCOUNT_APPROVAL_TIMEOUT", "0".into()),
        ("LOG_LEVEL", "info".into()),
    ];
    let mut workflows = Workflows { env, log: logs.join("vectis-workflows.log"), process: None };
    workflows.start();

    let shop = Arc::new(Shop::new(&pool));
    let account =
        shop.account("Acme", "buyer@acme.example", vec![AccountCommand::Approve { by: "staff".into() }]).await;
    for index in 0..SKUS {
        shop.product(&sku(index), "Part", "a part", 100, STOCK).await;
    }
    // A recurring order of another account, on a SKU of its own: a run every second
    // through the kills.
    let subscriber =
        shop.account("Globex", "buyer@globex.example", vec![AccountCommand::Approve { by: "staff".into() }]).await;
    shop.product("KILL-RECURRING", "Part", "a part", 100, 10_000).await;
    let recurring = Uuid::now_v7();
    let subscription = AccountCommand::Recurring(RecurringOrderCommand::Schedule {
        recurring_order_id: recurring,
        lines: vec![RecurringLine { sku: "KILL-RECURRING".into(), quantity: 2 }],
        schedule: Schedule {
            starts_at: chrono::Utc::now() + chrono::Duration::seconds(1),
            interval_seconds: 1,
            ends_at: None,
            max_runs: Some(RECURRING_RUNS),
        },
        by: "key:buyer".into(),
    });
    let mut store = shop.handler.store().clone();
    let stream = StreamId::account(subscriber);
    shop.handler
        .execute::<vectis_command_api::domain::Account, _>(&mut store, &stream, None, &shop.metadata, |_| {
            subscription.clone()
        })
        .await
        .expect("scheduled");
    let mut schedule = KillSchedule::from_env();
    let placed = Arc::new(Mutex::new(Placed::default()));
    let writer = tokio::spawn(place_orders(shop.clone(), account, placed.clone(), schedule.draw()));
    let stop_driver = Arc::new(tokio::sync::Notify::new());
    let driver = tokio::spawn(drive(shop.clone(), placed.clone(), stop_driver.clone()));

    let kills = 12;
    for kill in 0..kills {
        tokio::time::sleep(schedule.millis(300, 1_500)).await;
        workflows.kill();
        let down = schedule.millis(0, 1_000);
        println!("kill {kill}: down for {down:?}");
        tokio::time::sleep(down).await;
        workflows.start();
    }
    let last_kill = Instant::now();
    writer.await.expect("orders placed");
    let outcome = tokio::time::timeout(Duration::from_secs(60), driver).await;
    stop_driver.notify_one();
    assert!(outcome.is_ok(), "the orders did not settle in 60 s\n{}", workflows.tail());

    let placed = Arc::into_inner(placed).expect("one handle").into_inner().expect("placed");
    let mut last = String::new();
    while last_kill.elapsed() < Duration::from_secs(90) {
        match agreement(&pool, &shop, &placed).await {
            Ok(()) => {
                last.clear();
                break;
            }
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(last.is_empty(), "the orders and the inventory never agreed: {last}\n{}", workflows.tail());
    println!("agreed {:?} after the last kill", last_kill.elapsed());

    // Each line reserved (or refused for lack of stock) exactly once.
    let decided: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT data->>'order_id', data->>'sku', count(*) FROM events
          WHERE event_type IN ('StockReserved', 'ReservationRejected') AND data->>'sku' <> 'KILL-RECURRING'
          GROUP BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .expect("reservations");
    let decided: BTreeMap<(String, String), i64> = decided.into_iter().map(|(o, s, n)| ((o, s), n)).collect();
    let lines: BTreeSet<(String, String)> = placed
        .lines
        .iter()
        .flat_map(|(order, lines)| lines.iter().map(move |(sku, _)| (order.to_string(), sku.clone())))
        .collect();
    assert_eq!(decided.keys().cloned().collect::<BTreeSet<_>>(), lines, "every line decided");
    let twice: Vec<_> = decided.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "lines reserved more than once: {twice:?}");
    // No command appended twice: one trigger, one event of a type per stream (a
    // recurring order's runs share their trigger, the schedule: they are counted below).
    let repeated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM events WHERE metadata->>'causation_id' IS NOT NULL
                                  AND event_type NOT LIKE 'RecurringOrderRun%'
                                GROUP BY stream_id, event_type, metadata->>'causation_id' HAVING count(*) > 1) r",
    )
    .fetch_one(&pool)
    .await
    .expect("repeated");
    assert_eq!(repeated, 0, "a command appended twice");

    // The recurring order: every run recorded once, each placed one order.
    let runs: Vec<(i64, String)> = eventually(Duration::from_secs(30), "every recurring run recorded", || async {
        let runs: Vec<(i64, String)> = sqlx::query_as(
            "SELECT (data->>'run')::bigint, event_type FROM events
              WHERE stream_id = $1 AND event_type LIKE 'RecurringOrderRun%' ORDER BY 1",
        )
        .bind(format!("account-{subscriber}"))
        .fetch_all(&pool)
        .await
        .map_err(|e| e.to_string())?;
        if runs.len() as i64 >= RECURRING_RUNS {
            Ok(runs)
        } else {
            Err(format!("{} recorded", runs.len()))
        }
    })
    .await;
    let expected: Vec<(i64, String)> =
        (1..=RECURRING_RUNS).map(|run| (run, "RecurringOrderRunPlaced".into())).collect();
    assert_eq!(runs, expected, "each run placed once");
    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced' AND data->>'account_id' = $1")
            .bind(subscriber.to_string())
            .fetch_one(&pool)
            .await
            .expect("recurring orders");
    assert_eq!(orders, RECURRING_RUNS, "one order per run");

    // A deadline that passes while the process is down fires once after its restart.
    let total = STOCK * 1_000; // 80,000 units at 1 €: above the account's 50,000 € threshold
    let waiting = shop.order(account, &[(&sku(0), total)], vec![]).await;
    eventually(Duration::from_secs(20), "the approval's deadline to be armed", || async {
        let armed: i64 = sqlx::query_scalar("SELECT count(*) FROM read.order_approval_timers WHERE instance_id = $1")
            .bind(waiting.to_string())
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        if armed == 1 {
            Ok(())
        } else {
            Err("not armed".into())
        }
    })
    .await;
    workflows.kill();
    tokio::time::sleep(APPROVAL_TIMEOUT + Duration::from_secs(1)).await;
    workflows.start();
    eventually(Duration::from_secs(30), "the overdue deadline to reject the order", || async {
        let order = shop.handler.load::<Order>(&StreamId::order(waiting)).await.map_err(|e| e.to_string())?;
        match order.state.map(|o| o.status) {
            Some(OrderStatus::Rejected) => Ok(()),
            other => Err(format!("it is {other:?}")),
        }
    })
    .await;
    let rejections: Vec<String> =
        sqlx::query_scalar("SELECT data->>'reason' FROM events WHERE stream_id = $1 AND event_type = 'OrderRejected'")
            .bind(format!("order-{waiting}"))
            .fetch_all(&pool)
            .await
            .expect("rejections");
    assert_eq!(rejections, ["approval timed out"]);
    let (status, attempts): (String, i32) = sqlx::query_as(
        "SELECT status, attempts FROM workflow_outbox WHERE workflow = 'order_approval' AND instance_id = $1",
    )
    .bind(waiting.to_string())
    .fetch_one(&pool)
    .await
    .expect("the deadline's step");
    assert_eq!((status.as_str(), attempts), ("done", 1), "the deadline fired once");

    let tail = workflows.tail();
    let process = workflows.process.as_mut().expect("running");
    assert!(process.is_running(), "vectis-workflows exited by itself:\n{tail}");
    drop(workflows);
    relay.stop().await;
    std::fs::remove_dir_all(&logs).ok();
}
