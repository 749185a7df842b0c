//! Building and running the gateway: [`Application::build`] binds the listener and prepares a
//! lazy channel to the ingest service; [`app`] is the router, for tests to drive directly.

use crate::configuration::Settings;
use crate::openapi;
use crate::routes::{concur, health, receipts_v3, receipts_v4, resumable, tus, workspace};
use crate::state::AppState;
use crate::telemetry;
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// The whole HTTP API over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(concur::router())
        .merge(receipts_v3::router())
        .merge(receipts_v4::router())
        .merge(tus::router())
        .merge(resumable::router())
        .merge(workspace::router(state.limits))
        .merge(health::router())
        .route("/openapi.json", get(openapi::openapi_json))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            resumable::options_layer,
        ))
        .layer(axum::middleware::from_fn(telemetry::trace_request))
        .with_state(state)
}

/// A built, bound, not yet running gateway.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: Router,
    shutdown_timeout: Duration,
    limits: imaging_net::ListenerLimits,
}

impl Application {
    /// Binds `settings.server.listen_addr` and prepares the ingest channel (connected lazily,
    /// so the ingest service need not be up yet).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let state = AppState::from_settings(&settings).with_context(|| {
            format!("configuring the ingest client for {}", settings.ingest.url)
        })?;
        let listener = TcpListener::bind(&settings.server.listen_addr)
            .await
            .with_context(|| format!("binding {}", settings.server.listen_addr))?;
        let port = listener.local_addr()?.port();
        Ok(Application {
            listener,
            port,
            router: app(state),
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_seconds),
            limits: settings.server.listener_limits(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish for at most `server.shutdown_timeout_seconds`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = imaging_net::serve_http(self.listener, self.router, self.limits, async {
            let _ = stopped.await;
        });
        let mut server = tokio::spawn(server);
        tokio::select! {
            served = &mut server => return Ok(served.context("HTTP server task failed")??),
            () = shutdown => {}
        }
        let _ = stop.send(());
        match tokio::time::timeout(self.shutdown_timeout, &mut server).await {
            Ok(served) => Ok(served.context("HTTP server task failed")??),
            Err(_) => {
                tracing::warn!("in-flight requests outlived the shutdown timeout; stopping anyway");
                server.abort();
                Ok(())
            }
        }
    }
}
