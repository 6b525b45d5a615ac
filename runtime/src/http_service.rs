//! An HTTP service's lifetime: bound at build time (so tests can ask for port 0 and
//! read the address), served until the shutdown signal, then draining the requests in
//! flight. The command API and the query API are each one of these.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;

use crate::Shutdown;

pub struct HttpService {
    name: &'static str,
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: Shutdown,
}

impl HttpService {
    /// Binds `addr`; `name` says which service in errors ("the query API").
    pub async fn bind(
        name: &'static str,
        addr: SocketAddr,
        router: Router,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("{name}: cannot listen on {addr}"))?;
        Ok(Self { name, listener, router, shutdown })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until the shutdown signal, then finishes the requests in flight.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        // The peer address is the rate limiter's client (or the proxy in front of it).
        axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
            .with_context(|| format!("serving {}", self.name))
    }
}
