//! The browser pages as a developer opens them, in Debian's headless Chromium driven by
//! its ChromeDriver (WebDriver over HTTP): GraphiQL at the query API's `/graphql`
//! renders from the files the process serves (this machine reaches no CDN) and answers
//! a query typed into its editor; Swagger UI at the command API's `/docs/` renders the
//! documented operations.

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;
use vectis_command_api::process::{CommandApi, CommandApiSettings};
use vectis_projectors::search::SearchSettings;
use vectis_query_api::process::{QueryApi, QueryApiSettings};
use vectis_runtime::{
    auth::{ApiKeys, Scope},
    Environment, Shutdown,
};
use vectis_test_support::{eventually, http::try_http_request};

/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver with one headless Chromium session; both end when dropped.
struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    profile: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("bound").port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/test installs Debian's chromium-driver)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        eventually(Duration::from_secs(20), "ChromeDriver ready", || async move {
            let (_, body) = try_http_request(addr, "GET", "/status", &[], None).await?;
            let status: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            if status["value"]["ready"] == true {
                Ok(())
            } else {
                Err(body)
            }
        })
        .await;
        let profile = std::env::temp_dir().join(format!("vectis-chromium-{}", Uuid::new_v4().simple()));
        // As this machine runs it: no sandbox as root, and none of the background
        // connections a closed network refuses.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let (status, body) =
            try_http_request(addr, "POST", "/session", &[], Some(&capabilities.to_string())).await.expect("session");
        let answer: Value = serde_json::from_str(&body).expect("JSON");
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("{status}: {body}")).to_string();
        Self { driver, addr, session, profile }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string());
        let (status, text) = try_http_request(self.addr, method, &path, &[], body.as_deref()).await?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| format!("{status}: {e}: {text}"))?;
        if status == 200 {
            Ok(answer["value"].clone())
        } else {
            Err(format!("{method} {path}: {status}: {}", answer["value"]["message"]))
        }
    }

    async fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await.expect("navigates");
    }

    /// The first element matching `css`, waiting up to 20 s for it.
    async fn element(&self, css: &str) -> String {
        eventually(Duration::from_secs(20), &format!("an element {css}"), || async {
            let found = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css}))).await?;
            found[ELEMENT].as_str().map(str::to_string).ok_or_else(|| format!("{found}"))
        })
        .await
    }

    async fn text(&self, element: &str) -> String {
        let text = self.call("GET", &format!("/element/{element}/text"), None).await.expect("text");
        text.as_str().unwrap_or_default().to_string()
    }

    /// Presses `keys` together (held in order, released in reverse) on the focused element.
    async fn keys(&self, keys: &[&str]) {
        let mut actions: Vec<Value> = keys.iter().map(|k| json!({"type": "keyDown", "value": k})).collect();
        actions.extend(keys.iter().rev().map(|k| json!({"type": "keyUp", "value": k})));
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.call("POST", "/actions", Some(body)).await.expect("keys");
    }

    async fn count(&self, css: &str) -> usize {
        let found = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        found.ok().and_then(|f| f.as_array().map(Vec::len)).unwrap_or(0)
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await.expect("script")
    }
}

impl Drop for Browser {
    /// Ends the session first (ChromeDriver then quits Chromium, which would outlive a
    /// killed driver), also when the test failed: a blocking request, as drop cannot wait.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut stream) = std::net::TcpStream::connect(self.addr) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request =
                format!("DELETE /session/{} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", self.session);
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = [0u8; 1024];
                let _ = stream.read(&mut answer);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn graphiql_renders_offline_and_answers_a_typed_query(pool: PgPool) {
    let search = std::env::temp_dir().join(format!("vectis-browser-{}", Uuid::new_v4().simple()));
    let mut settings = QueryApiSettings::from_env().expect("settings");
    settings.environment = Environment::Development;
    settings.search = SearchSettings::Embedded { root: search.clone() };
    settings.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let shutdown = Shutdown::new();
    let api = QueryApi::build_with_pool(settings, pool.clone(), shutdown.clone()).await.expect("builds");
    let base = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());
    let (_, key) = ApiKeys::new(pool.clone()).create("graphiql", &[Scope::Read]).await.expect("key");

    let browser = Browser::start().await;
    browser.open(&format!("{base}/graphql")).await;
    browser.element(".graphiql-container").await;
    // The key, as a user enters it in the headers tab (GraphiQL keeps it in storage).
    browser
        .script(
            "localStorage.setItem('graphiql:headers', JSON.stringify({Authorization: 'Bearer ' + arguments[0]}));",
            json!([key]),
        )
        .await;
    browser.open(&format!("{base}/graphql")).await;
    // Click into the editor, select what is there (Ctrl+A), and type over it, key by key.
    let editor = browser.element(".graphiql-query-editor .CodeMirror").await;
    browser.call("POST", &format!("/element/{editor}/click"), Some(json!({}))).await.expect("clicked");
    browser.keys(&["\u{E009}", "a"]).await;
    for key in "query Typed { health".chars() {
        browser.keys(&[&key.to_string()]).await;
    }
    let typed = browser
        .script("return document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue();", json!([]))
        .await;
    assert!(typed.as_str().is_some_and(|q| q.starts_with("query Typed { health")), "the editor holds {typed}");
    let run = browser.element(".graphiql-execute-button").await;
    browser.call("POST", &format!("/element/{run}/click"), Some(json!({}))).await.expect("clicked");
    let result = browser.element(".result-window").await;
    eventually(Duration::from_secs(20), "the answer in the result pane", || async {
        let text = browser.text(&result).await;
        if text.contains("Vectis Commerce API is healthy") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(&search);
}

#[sqlx::test(migrator = "vectis_event_store::MIGRATOR")]
async fn swagger_ui_renders_the_documented_operations(pool: PgPool) {
    let mut settings = CommandApiSettings::from_env().expect("settings");
    settings.addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let shutdown = Shutdown::new();
    let api = CommandApi::build_with_pool(settings, pool, shutdown.clone()).await.expect("builds");
    let base = format!("http://{}", api.addr());
    tokio::spawn(api.run_until_stopped());

    let browser = Browser::start().await;
    browser.open(&format!("{base}/docs/")).await;
    let title = browser.element(".swagger-ui .info .title").await;
    assert!(browser.text(&title).await.contains("Vectis"), "the API's title");
    eventually(Duration::from_secs(20), "the operations listed", || async {
        let operations = browser.count(".swagger-ui .opblock").await;
        if operations >= 10 {
            Ok(())
        } else {
            Err(format!("{operations} operations"))
        }
    })
    .await;
    let paths = browser
        .script("return [...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent);", json!([]))
        .await;
    assert!(paths.to_string().contains("/v1/orders"), "{paths}");
    shutdown.trigger();
}
