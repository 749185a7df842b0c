//! Building and running the service: backends from settings, the gRPC server (with health,
//! reflection and gRPC-Web) and, for filesystem storage, the signed-URL file server.

use crate::auth::Verifier;
use crate::configuration::{Settings, StateSettings, StorageSettings};
use crate::grpc::IngestApi;
use crate::ingest::Ingestor;
use crate::state::{Catalog, EmbeddedState, Quota, RedisState};
use crate::storage::signed_url::UrlSigner;
use crate::storage::{FsStore, ObjectStore, S3Store};
use anyhow::Context;
use imaging_proto::v1::image_ingest_server::ImageIngestServer;
use imaging_proto::v1::target_registry_server::TargetRegistryServer;
use secrecy::ExposeSecret;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Upload bytes a client may send ahead of what the service has read, per HTTP/2 stream:
/// hyper's default, 1 MiB. It is also what a refused upload can have in flight; half of it
/// halved single-upload throughput in the upload benchmark (see `bench/README.md`).
const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
/// The same for all streams of one connection together. The gateway multiplexes every upload
/// over one connection, and with hyper's default (equal to one stream's window) one upload at
/// a time ran at under half the speed of a direct S3 PUT.
const CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// Storage and state backends built from settings.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Object store.
    pub store: Arc<dyn ObjectStore>,
    /// Quota counters.
    pub quota: Arc<dyn Quota>,
    /// Catalog.
    pub catalog: Arc<dyn Catalog>,
}

/// Builds the state backend.
pub fn state_backend(
    settings: &StateSettings,
) -> anyhow::Result<(Arc<dyn Quota>, Arc<dyn Catalog>)> {
    Ok(match settings {
        StateSettings::Embedded { path } => {
            let state = Arc::new(EmbeddedState::open(path).context("opening the state file")?);
            (state.clone(), state)
        }
        StateSettings::Redis { url, key_prefix } => {
            let state = Arc::new(RedisState::new(url, key_prefix).context("configuring Redis")?);
            (state.clone(), state)
        }
    })
}

/// Moves Redis data of an earlier key layout to this one (see [`RedisState::migrate_layout`]).
/// Best effort on start: with Redis unreachable the service starts anyway (calls fail closed
/// until it is back), and the move is tried again on the next start.
pub async fn migrate_state(settings: &StateSettings) {
    let StateSettings::Redis { url, key_prefix } = settings else {
        return;
    };
    let Ok(state) = RedisState::new(url, key_prefix) else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(30), state.migrate_layout()).await {
        Ok(Ok(0)) => {}
        Ok(Ok(moved)) => tracing::info!(moved, "Redis keys moved to the current layout"),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "Redis layout migration not done; retried on next start")
        }
        Err(_) => tracing::warn!("Redis layout migration timed out; retried on next start"),
    }
}

/// Builds the S3 store, or the filesystem store with its public file-server URL.
pub async fn storage_backend(
    settings: &StorageSettings,
    files_public_url: &str,
) -> anyhow::Result<(Arc<dyn ObjectStore>, Option<Arc<FsStore>>)> {
    Ok(match settings {
        StorageSettings::Filesystem {
            root,
            url_signing_key,
        } => {
            let signer = UrlSigner::new(url_signing_key.expose_secret().as_bytes());
            let fs = Arc::new(FsStore::new(root, signer, files_public_url).await?);
            (fs.clone(), Some(fs))
        }
        StorageSettings::S3 {
            endpoint,
            region,
            bucket,
            access_key,
            secret_key,
            public_endpoint,
            payload,
        } => {
            let s3 = S3Store::new(
                endpoint,
                public_endpoint,
                region,
                bucket,
                access_key,
                secret_key.expose_secret(),
            )?
            .with_payload_check(*payload);
            (Arc::new(s3), None)
        }
    })
}

/// A built, bound, not yet running service.
pub struct Application {
    grpc: TcpListener,
    grpc_port: u16,
    files: Option<(TcpListener, axum::Router)>,
    files_port: Option<u16>,
    api: IngestApi,
    verifier: Verifier,
    backends: Backends,
    drain: Duration,
    listener: imaging_net::ListenerLimits,
    max_chunk_bytes: usize,
    events: crate::configuration::EventSettings,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("grpc_port", &self.grpc_port)
            .field("files_port", &self.files_port)
            .finish()
    }
}

impl Application {
    /// Binds the listeners and builds the backends.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.check()?;
        if settings.dev {
            tracing::warn!(
                "dev mode: built-in dev secrets may be in use; never run this in production"
            );
        }
        let grpc = TcpListener::bind(&settings.server.grpc_addr)
            .await
            .with_context(|| format!("binding gRPC on {}", settings.server.grpc_addr))?;
        let grpc_port = grpc.local_addr()?.port();
        let files_listener = match settings.storage {
            StorageSettings::Filesystem { .. } => Some(
                TcpListener::bind(&settings.server.files_addr)
                    .await
                    .with_context(|| format!("binding files on {}", settings.server.files_addr))?,
            ),
            StorageSettings::S3 { .. } => None,
        };
        let files_port = match &files_listener {
            Some(listener) => Some(listener.local_addr()?.port()),
            None => None,
        };
        let public_url = match (&files_listener, settings.server.files_public_url.as_str()) {
            (Some(listener), "") => format!("http://{}", listener.local_addr()?),
            (_, configured) => configured.to_owned(),
        };
        let (store, fs) = storage_backend(&settings.storage, &public_url).await?;
        let (quota, catalog) = state_backend(&settings.state)?;
        migrate_state(&settings.state).await;
        let backends = Backends {
            store: store.clone(),
            quota: quota.clone(),
            catalog: catalog.clone(),
        };
        let ingestor = Ingestor::new(
            store,
            quota,
            catalog,
            settings.limits.clone(),
            Duration::from_secs(settings.server.url_ttl_seconds),
            crate::ingest::LockTiming {
                wait: Duration::from_secs(settings.server.lock_wait_seconds),
                ttl: Duration::from_millis(settings.server.lock_ttl_millis),
            },
        )
        .with_outbox(settings.events.outbox);
        let verifier = Verifier::new(&settings.auth)?;
        let files = match (files_listener, fs) {
            (Some(listener), Some(fs)) => Some((listener, crate::storage::files::router(fs))),
            _ => None,
        };
        Ok(Self {
            grpc,
            grpc_port,
            files,
            files_port,
            api: IngestApi::new(ingestor),
            verifier,
            listener: listener_limits(&settings),
            max_chunk_bytes: settings.limits.upload.max_chunk_bytes,
            events: settings.events.clone(),
            backends,
            drain: Duration::from_secs(settings.server.drain_seconds),
        })
    }

    /// The bound gRPC port.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// The bound file-server port (filesystem storage only).
    pub fn files_port(&self) -> Option<u16> {
        self.files_port
    }

    /// The backends (for tests and operations).
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Serves until `shutdown` resolves, then stops accepting and drains.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (reporter, health) = tonic_health::server::health_reporter();
        let reflection = || {
            // Both reflection versions list every served service, themselves included.
            tonic_reflection::server::Builder::configure()
                .include_reflection_service(false)
                .register_encoded_file_descriptor_set(imaging_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let checker = tokio::spawn(watch_health(reporter, self.backends.clone()));
        let janitor = tokio::spawn(sweep_periodically(self.backends.clone()));
        let sessions = tokio::spawn(expire_sessions_periodically(self.api.ingestor().clone()));
        // Every replica works the job queue under a name of its own (a restarted process is a
        // new consumer: what the old one held is taken over once its lease lapses).
        let worker = format!("worker-{}", uuid::Uuid::new_v4().simple());
        let jobs = tokio::spawn(self.api.ingestor().clone().work_jobs(worker));
        // Every replica relays the outboxes (one relay per outbox at a time).
        let hooks_ready = Arc::new(tokio::sync::Notify::new());
        let stop_relay = tokio_util::sync::CancellationToken::new();
        let relay = {
            let stop = stop_relay.clone();
            let catalog = self.backends.catalog.clone();
            let settings = self.events.clone();
            let pending = self.api.ingestor().pending_events();
            let hooks_ready = hooks_ready.clone();
            tokio::spawn(async move {
                crate::events::relay::Relay::new(catalog, settings, pending, hooks_ready)
                    .await
                    .run(stop)
                    .await;
            })
        };
        // And delivers the webhooks' queues.
        let dispatcher = tokio::spawn(
            crate::events::webhooks::Dispatcher::new(
                self.backends.catalog.clone(),
                self.events.clone(),
                hooks_ready,
            )
            .run(),
        );
        let (stop_files, files_stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = self.listener;
        let files = self.files.map(|(listener, router)| {
            tokio::spawn(async move {
                let stopped = async {
                    let _ = files_stopped.await;
                };
                if let Err(err) = imaging_net::serve_http(listener, router, limits, stopped).await {
                    tracing::error!(error = %err, "file server failed");
                }
            })
        });
        let ingestor = self.api.ingestor().clone();
        let drain = self.drain;
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            // Refuse new uploads at once; the server stops accepting connections and drains.
            ingestor.stop_admitting();
            let _ = signalled.send(());
        };
        // An upload message is one chunk plus a few bytes of framing; registry messages are tiny.
        let ingest = ImageIngestServer::new(self.api.clone())
            .max_decoding_message_size(self.max_chunk_bytes + 1024);
        let registry = TargetRegistryServer::new(self.api)
            .max_decoding_message_size(crate::grpc::layer::MAX_UNARY_BODY_BYTES);
        let serve = tonic::transport::Server::builder()
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .accept_http1(true)
            .trace_fn(crate::grpc::layer::rpc_span)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(tower::util::MapRequestLayer::new(
                crate::grpc::layer::surface_resets,
            ))
            .layer(crate::grpc::layer::AuthenticateLayer::new(self.verifier))
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ingest)
            .add_service(registry)
            .serve_with_incoming_shutdown(imaging_net::incoming(self.grpc, limits), shutdown);
        let deadline = async {
            if on_signal.await.is_ok() {
                tokio::time::sleep(drain).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let served = tokio::select! {
            served = serve => served,
            () = deadline => {
                tracing::warn!(seconds = drain.as_secs(), "drain deadline passed; stopping with requests in flight");
                Ok(())
            }
        };
        let _ = stop_files.send(());
        if let Some(files) = files {
            let _ = files.await;
        }
        checker.abort();
        janitor.abort();
        sessions.abort();
        jobs.abort();
        // The relay finishes its batch and lets go of its outbox, if it can in a few seconds.
        stop_relay.cancel();
        let relay_abort = relay.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .is_err()
        {
            relay_abort.abort();
        }
        dispatcher.abort();
        served.context("gRPC server failed")
    }
}

/// The limits of both listeners, with the connection cap lowered to fit the open-files limit
/// (raised to its hard limit first).
fn listener_limits(settings: &Settings) -> imaging_net::ListenerLimits {
    let server = &settings.server;
    let open_files = imaging_net::raise_open_files_limit();
    imaging_net::ListenerLimits {
        max_connections: imaging_net::connection_cap(server.max_connections, open_files, 2),
        idle_timeout: Duration::from_secs(server.idle_timeout_seconds),
        header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
        max_concurrent_streams: server.max_concurrent_streams,
        keepalive_interval: Duration::from_secs(server.keepalive_interval_seconds),
        keepalive_timeout: Duration::from_secs(server.keepalive_timeout_seconds),
    }
}

/// Removes leftovers of interrupted writes and orphaned objects older than an hour, once an
/// hour (see [`crate::janitor`]).
async fn sweep_periodically(backends: Backends) {
    const EVERY: Duration = Duration::from_secs(3600);
    loop {
        tokio::time::sleep(EVERY).await;
        match backends.store.sweep(EVERY).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "janitor removed leftovers"),
            Err(err) => tracing::warn!(error = %err, "janitor sweep failed"),
        }
        let orphans = crate::janitor::remove_orphans(
            backends.store.as_ref(),
            backends.catalog.as_ref(),
            EVERY,
        )
        .await;
        match orphans {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => tracing::info!(removed = removed.len(), "janitor removed orphans"),
            Err(err) => tracing::warn!(error = %err, "janitor orphan sweep failed"),
        }
    }
}

/// Removes expired upload sessions with their bytes, every half of a session's lifetime (at
/// least every second, at most every minute).
async fn expire_sessions_periodically(ingestor: crate::ingest::Ingestor) {
    let every = ingestor.session_sweep_interval();
    loop {
        tokio::time::sleep(every).await;
        match ingestor.expire_sessions().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "janitor removed expired upload sessions"),
            Err(err) => tracing::warn!(error = %err, "janitor session sweep failed"),
        }
    }
}

/// Reports SERVING while storage and the quota store answer, NOT_SERVING otherwise.
async fn watch_health(reporter: tonic_health::server::HealthReporter, backends: Backends) {
    let mut last = None;
    loop {
        let healthy = backends.store.check().await.is_ok() && backends.quota.check().await.is_ok();
        if last != Some(healthy) {
            let status = if healthy {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            reporter
                .set_service_status("imaging.v1.ImageIngest", status)
                .await;
            if !healthy {
                tracing::warn!("a backend is unreachable; health is NOT_SERVING");
            }
            last = Some(healthy);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
