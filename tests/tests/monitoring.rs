//! Monitoring as an operator has it: the five real processes, a real Prometheus
//! (Debian's) running ops/prometheus/prometheus.yml with the test's ports and the real
//! rules, a workload through the HTTP APIs, then
//! - every target up and every rule group loaded;
//! - every panel's query of ops/grafana/dashboards answered with data (no empty or
//!   mistyped panel), and the API dashboard the six panels the platform describes;
//! - the projectors SIGKILLed while commands go on: `up` says so and alerts on it, and
//!   the lag the relay measures from outside the consumers rises.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_runtime::auth::{ApiKeys, Scope};
use vectis_test_support::{
    database_url, eventually, fresh_topics,
    http::{http_request, try_http_request},
    processes::{log_tail, Process},
};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("bound").port()
}

/// Debian's Prometheus as a child process, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stack's scrape configuration with this test's ports, a 1 s interval and the
/// repository's rules.
fn prometheus_config(ports: &[(&str, u16)]) -> String {
    let mut config = std::fs::read_to_string(repository().join("ops/prometheus/prometheus.yml")).expect("the config");
    for (default, port) in ports {
        assert!(config.contains(default), "prometheus.yml scrapes {default}");
        config = config.replace(default, &format!("127.0.0.1:{port}"));
    }
    let rules = repository().join("ops/prometheus/rules/*.yml");
    config
        .replace("scrape_interval: 10s", "scrape_interval: 1s")
        .replace("evaluation_interval: 10s", "evaluation_interval: 1s")
        .replace("- rules/*.yml", &format!("- {}", rules.display()))
        // No Alertmanager in this test.
        .replace("localhost:9093", &format!("127.0.0.1:{}", free_port()))
}

fn start_prometheus(dir: &Path, config: &str) -> Prometheus {
    let port = free_port();
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("prometheus is installed (scripts/test installs Debian's)");
    Prometheus { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's result vector, or why there is none.
async fn query(prometheus: SocketAddr, promql: &str) -> Result<Vec<Value>, String> {
    let path = format!("/api/v1/query?query={}", url_encode(promql));
    let (status, body) = try_http_request(prometheus, "GET", &path, &[], None).await?;
    let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if answer["status"] != "success" {
        return Err(format!("{status}: {body}"));
    }
    Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// A panel query as Grafana sends it, with its variables at the values a user starts with.
fn as_grafana_sends_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$job", ".+")
}

fn dashboard(name: &str) -> Value {
    let path = repository().join("ops/grafana/dashboards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard")).expect("JSON")
}

/// Every (panel title, refId, expr) of a dashboard, after checking what Grafana needs
/// of each panel.
fn panel_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()), "a uid keeps links stable");
    let variables = dashboard["templating"]["list"].as_array().expect("templating");
    assert!(variables.iter().any(|v| v["name"] == "datasource" && v["query"] == "prometheus"), "a datasource variable");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("a title").to_string();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title} reads the chosen Prometheus");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title} has a grid position");
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} queries something");
        for target in targets {
            let expr = target["expr"].as_str().expect("an expression").to_string();
            queries.push((title.clone(), target["refId"].as_str().expect("a refId").to_string(), expr));
        }
    }
    queries
}

async fn command(api: SocketAddr, key: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let (status, text) =
        http_request(api, method, path, &[("Authorization", auth.as_str())], Some(&body.to_string())).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Accounts, items and orders through the command API, one refusal (a 4xx), and reads
/// through GraphQL.
async fn workload(api: SocketAddr, query_api: SocketAddr, key: &str, round: usize) {
    let (status, account) = command(
        api,
        key,
        "POST",
        "/v1/accounts",
        json!({"name": format!("Acme {round}"), "email": format!("buyer{round}@acme.test"),
               "credit_limit": {"amount_minor": 1_000_000, "currency": "EUR"},
               "approval_threshold": {"amount_minor": 500_000, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["stream_id"].as_str().expect("id").trim_start_matches("account-").to_string();
    let (status, _) = command(api, key, "POST", &format!("/v1/accounts/{account_id}/approve"), json!({})).await;
    assert!(status < 300, "approval: {status}");
    let sku = format!("MON-{round}");
    let (status, item) = command(
        api,
        key,
        "POST",
        "/v1/inventory/items",
        json!({"sku": sku, "name": "Hex bolt", "unit_price": {"amount_minor": 25, "currency": "EUR"}}),
    )
    .await;
    assert_eq!(status, 201, "{item}");
    let (status, _) =
        command(api, key, "POST", &format!("/v1/inventory/items/{sku}/receipts"), json!({"quantity": 100})).await;
    assert!(status < 300, "receipt: {status}");
    let (status, order) = command(
        api,
        key,
        "POST",
        "/v1/orders",
        json!({"account_id": account_id, "lines": [{"sku": sku, "quantity": 2}]}),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let (status, _) = command(api, key, "POST", "/v1/orders", json!({"lines": "not a list"})).await;
    assert!((400..500).contains(&status), "a bad order is refused: {status}");
    let auth = format!("Bearer {key}");
    let (status, _) = http_request(
        query_api,
        "POST",
        "/graphql",
        &[("Authorization", auth.as_str())],
        Some(&json!({"query": "{ health }"}).to_string()),
    )
    .await;
    assert_eq!(status, 200);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn prometheus_scrapes_every_process_every_panel_has_data_and_a_dead_consumer_shows(pool: PgPool) {
    let kafka = fresh_topics().await.expect("topics");
    let database = pool.connect_options().get_database().expect("the test database").to_string();
    let dir = std::env::temp_dir().join(format!("vectis-monitoring-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    println!("logs in {}", dir.display());
    let ports = [
        ("localhost:8000", free_port()),
        ("localhost:8001", free_port()),
        ("localhost:8002", free_port()),
        ("localhost:8003", free_port()),
        ("localhost:8004", free_port()),
    ];
    let port = |default: &str| ports.iter().find(|(d, _)| *d == default).expect("a port").1;
    let env = vec![
        ("DATABASE_URL", database_url(&database).expect("database url")),
        ("KAFKA_BROKERS", kafka.brokers.clone()),
        ("VECTIS_TOPIC_PREFIX", kafka.naming.prefix().to_string()),
        ("VECTIS_DATA_DIR", dir.join("data").display().to_string()),
        ("LOG_LEVEL", "info".into()),
        ("QUERY_API_ADDR", format!("127.0.0.1:{}", port("localhost:8000"))),
        ("COMMAND_API_ADDR", format!("127.0.0.1:{}", port("localhost:8001"))),
        ("PROJECTORS_OPS_ADDR", format!("127.0.0.1:{}", port("localhost:8002"))),
        ("RELAY_OPS_ADDR", format!("127.0.0.1:{}", port("localhost:8003"))),
        ("WORKFLOWS_OPS_ADDR", format!("127.0.0.1:{}", port("localhost:8004"))),
        ("LAG_MONITOR_INTERVAL", "1s".into()),
        ("PROJECTOR_LAG_INTERVAL_MS", "1000".into()),
        ("WORKFLOW_METRICS_INTERVAL_MS", "1000".into()),
        ("PROJECTOR_INSTANCE_ID", "projectors-1".into()),
    ];
    let log = |name: &str| dir.join(format!("{name}.log"));
    let names = ["vectis-command-api", "vectis-relay", "vectis-projectors", "vectis-workflows", "vectis-query-api"];
    let mut processes: Vec<(&str, Option<Process>)> =
        names.iter().map(|name| (*name, Some(Process::start(name, &env, &log(name))))).collect();
    let prometheus = start_prometheus(&dir, &prometheus_config(&ports));
    let (_, key) = ApiKeys::new(pool.clone()).create("monitoring", &Scope::ALL).await.expect("a key");
    let api = SocketAddr::from(([127, 0, 0, 1], port("localhost:8001")));
    let query_api = SocketAddr::from(([127, 0, 0, 1], port("localhost:8000")));

    let logs = || names.iter().map(|n| format!("{n}:\n{}", log_tail(&log(n), 15))).collect::<Vec<_>>().join("\n");
    eventually(Duration::from_secs(60), "every target up", || async {
        let up = query(prometheus.addr, "up").await?;
        let down: Vec<&Value> = up.iter().filter(|s| s["value"][1] != "1").collect();
        if up.len() == names.len() && down.is_empty() {
            Ok(())
        } else {
            Err(format!("{up:?}\n{}", logs()))
        }
    })
    .await;
    let (_, rules) = http_request(prometheus.addr, "GET", "/api/v1/rules", &[], None).await;
    let rules: Value = serde_json::from_str(&rules).expect("rules");
    let groups: Vec<&str> =
        rules["data"]["groups"].as_array().expect("groups").iter().filter_map(|g| g["name"].as_str()).collect();
    for group in ["vectis-availability", "vectis-api", "vectis-consumers", "vectis-relay", "vectis-workflows"] {
        assert!(groups.contains(&group), "{group} is loaded: {groups:?}");
    }

    for round in 0..3 {
        workload(api, query_api, &key, round).await;
    }
    let api_dashboard = dashboard("vectis_api.json");
    let titles: Vec<&str> =
        api_dashboard["panels"].as_array().expect("panels").iter().filter_map(|p| p["title"].as_str()).collect();
    assert_eq!(
        titles,
        [
            "Totals",
            "Request rate",
            "Error rate by status",
            "Request latency p50 / p95 / p99",
            "In-progress requests",
            "Payload size p95"
        ],
        "the platform's six API panels"
    );
    let mut queries = panel_queries(&api_dashboard);
    queries.extend(panel_queries(&dashboard("vectis_pipeline.json")));
    // Workflow steps, rates and latencies need requests in the last minute: keep a
    // gentle workload going while the panels are checked.
    let topping_up = tokio::spawn({
        let key = key.clone();
        async move {
            for round in 1000.. {
                workload(api, query_api, &key, round).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    for (panel, ref_id, expr) in &queries {
        let promql = as_grafana_sends_it(expr);
        eventually(Duration::from_secs(60), &format!("data for {panel} ({ref_id}): {promql}"), || async {
            let result = query(prometheus.addr, &promql).await?;
            if result.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Err("an empty result".into())
            } else {
                Ok(())
            }
        })
        .await;
    }
    topping_up.abort();

    // The projectors die; commands go on. Their own metrics go with them, the relay's
    // measurement of their groups' lag does not.
    let projectors = processes.iter_mut().find(|(n, _)| *n == "vectis-projectors").and_then(|(_, p)| p.take());
    projectors.expect("running").kill();
    for round in 200..205 {
        workload(api, query_api, &key, round).await;
    }
    eventually(Duration::from_secs(30), "the projectors' target down and alerting", || async {
        let down = query(prometheus.addr, "up{job=\"vectis-projectors\"} == 0").await?;
        let alerts =
            query(prometheus.addr, "ALERTS{alertname=\"VectisTargetDown\", job=\"vectis-projectors\"}").await?;
        if !down.is_empty() && !alerts.is_empty() {
            Ok(())
        } else {
            Err(format!("up: {down:?}, alerts: {alerts:?}"))
        }
    })
    .await;
    eventually(Duration::from_secs(30), "the orders read model's lag, measured by the relay", || async {
        let lag = query(prometheus.addr, "sum by (projection) (vectis_consumer_lag_events{projection=\"orders\"}) > 0")
            .await?;
        if lag.is_empty() {
            Err("no lag yet".into())
        } else {
            Ok(())
        }
    })
    .await;
    drop(processes);
    drop(prometheus);
    std::fs::remove_dir_all(&dir).ok();
}
