//! `spawn_app`: the ingest service on free ports over real backends, and a `TestApp` with one
//! method per call a client makes.

use crate::{RedisCluster, RedisServer, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::target_registry_client::TargetRegistryClient;
use imaging_proto::v1::upload_image_request::Part;
use ingest_service::auth::{Claims, mint_hs256};
use ingest_service::configuration::{Settings, StateSettings, StorageSettings};
use ingest_service::startup::{Application, Backends};
use ingest_service::storage::ObjectEntry;
use std::sync::LazyLock;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_types::StatusExt;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    let subscriber = if std::env::var("TEST_LOG").is_ok() {
        imaging_telemetry::subscriber("test", "debug", std::io::stdout, None)
    } else {
        imaging_telemetry::subscriber("test", "debug", std::io::sink, None)
    };
    let _ = tracing::subscriber::set_global_default(subscriber);
});

/// Which backends a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// Real S3 server (s3s-fs over HTTP, SigV4) and real Redis.
    Real,
    /// The same, with a Redis that keeps every acknowledged write on disk (append-only file,
    /// fsync always), so it can be killed and restarted with its data.
    Durable,
    /// Real S3 server and a real 3-primary Redis Cluster.
    Cluster,
    /// The embedded default: filesystem storage and the embedded state file.
    Embedded,
}

/// The servers a test app's backends run on (each stopped when dropped).
#[derive(Default)]
pub struct Servers {
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
    pub s3: Option<S3Server>,
}

/// A running service and its servers.
pub struct TestApp {
    pub addr: String,
    /// `host:port` of the signed-URL file server (filesystem storage only).
    pub files_addr: Option<String>,
    pub settings: Settings,
    pub backends: Backends,
    pub ingest: ImageIngestClient<Channel>,
    pub registry: TargetRegistryClient<Channel>,
    pub redis: Option<RedisServer>,
    pub cluster: Option<RedisCluster>,
    pub s3: Option<S3Server>,
    _data: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test app on `stack`, plus the servers it needs.
pub async fn test_settings(stack: Stack, data: &std::path::Path) -> (Settings, Servers) {
    let mut settings = Settings::embedded(data);
    settings.server.grpc_addr = "127.0.0.1:0".into();
    settings.server.files_addr = "127.0.0.1:0".into();
    settings.server.lock_wait_seconds = 60;
    settings.auth.hs256_secret = "test-secret".into();
    let mut servers = Servers::default();
    let url = match stack {
        Stack::Embedded => return (settings, servers),
        Stack::Real => servers.redis.insert(RedisServer::start()).url(),
        Stack::Durable => servers.redis.insert(RedisServer::start_persistent()).url(),
        Stack::Cluster => servers.cluster.insert(RedisCluster::start()).url(),
    };
    let s3 = servers.s3.insert(S3Server::start().await);
    settings.state = StateSettings::Redis {
        url,
        key_prefix: "test:".into(),
    };
    settings.storage = StorageSettings::S3 {
        endpoint: s3.endpoint.clone(),
        region: "us-east-1".into(),
        bucket: S3_BUCKET.into(),
        access_key: S3_ACCESS_KEY.into(),
        secret_key: S3_SECRET_KEY.into(),
        public_endpoint: String::new(),
        payload: Default::default(),
    };
    (settings, servers)
}

/// Starts the service on `stack`.
pub async fn spawn_app(stack: Stack) -> TestApp {
    spawn_app_with(stack, |_| {}).await
}

/// The workspaces every test app has registered (default quota), so that receipts, which are
/// charged to the caller's workspace, can be uploaded at once.
pub const REGISTERED_WORKSPACES: [&str; 2] = ["w1", "w2"];

/// Starts the service on `stack` after `tweak` adjusts the settings, and registers
/// [`REGISTERED_WORKSPACES`].
pub async fn spawn_app_with(stack: Stack, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&TRACING);
    let data = tempfile::tempdir().expect("temp dir");
    let (mut settings, servers) = test_settings(stack, data.path()).await;
    tweak(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .expect("app builds");
    let addr = format!("http://127.0.0.1:{}", app.grpc_port());
    let files_addr = app.files_port().map(|port| format!("127.0.0.1:{port}"));
    let backends = app.backends().clone();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(addr.clone())
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let app = TestApp {
        addr,
        files_addr,
        settings,
        backends,
        ingest: ImageIngestClient::new(channel.clone())
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20),
        registry: TargetRegistryClient::new(channel),
        redis: servers.redis,
        cluster: servers.cluster,
        s3: servers.s3,
        _data: data,
        shutdown: Some(shutdown),
        server: Some(server),
    };
    // Registration needs a service token, minted here with the HS256 secret (if there is one).
    if !secrecy::ExposeSecret::expose_secret(&app.settings.auth.hs256_secret).is_empty() {
        for workspace in REGISTERED_WORKSPACES {
            app.register_workspace(workspace, 0).await;
        }
    }
    app
}

impl TestApp {
    /// Signals the service to stop: it refuses new uploads and drains.
    pub fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// The `ErrorInfo` reason of a status.
pub fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_else(|| {
            format!(
                "<no ErrorInfo; code {:?}: {}>",
                status.code(),
                status.message()
            )
        })
}

/// A target message.
pub fn target(kind: v1::TargetKind, id: &str) -> v1::Target {
    v1::Target {
        kind: kind as i32,
        id: id.into(),
        workspace_id: String::new(),
    }
}

/// A workspace-expense target.
pub fn expense(workspace: &str, id: &str) -> v1::Target {
    v1::Target {
        kind: v1::TargetKind::WorkspaceExpense as i32,
        id: id.into(),
        workspace_id: workspace.into(),
    }
}

/// An upload header.
pub fn header(target: v1::Target, content_type: &str, bytes: &[u8]) -> v1::UploadHeader {
    v1::UploadHeader {
        target: Some(target),
        content_type: content_type.into(),
        file_name: "file".into(),
        declared_size: bytes.len() as u64,
        ..Default::default()
    }
}

/// The messages of an upload: header, then chunks of `chunk` bytes.
pub fn messages(
    header: v1::UploadHeader,
    bytes: &[u8],
    chunk: usize,
) -> Vec<v1::UploadImageRequest> {
    let mut out = vec![v1::UploadImageRequest {
        part: Some(Part::Header(header)),
    }];
    out.extend(bytes.chunks(chunk).map(|c| v1::UploadImageRequest {
        part: Some(Part::Chunk(c.to_vec().into())),
    }));
    out
}

/// Wraps `message` with a bearer token.
pub fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

impl TestApp {
    /// A token for `sub` in `ws` with `roles` and `perms`, valid for an hour.
    pub fn token(&self, sub: &str, ws: &str, roles: &[&str], perms: &[&str]) -> String {
        self.token_expiring(sub, ws, roles, perms, 3600)
    }

    /// A token that expires in `seconds` (negative: already expired).
    pub fn token_expiring(
        &self,
        sub: &str,
        ws: &str,
        roles: &[&str],
        perms: &[&str],
        seconds: i64,
    ) -> String {
        let claims = Claims::expiring_in(sub, ws, roles, perms, seconds);
        mint_hs256(
            secrecy::ExposeSecret::expose_secret(&self.settings.auth.hs256_secret),
            &claims,
        )
        .expect("mint")
    }

    /// The platform registry's token: role `service` for every workspace (`ws` = `*`).
    pub fn service_token(&self) -> String {
        self.token("registry", "*", &["service"], &[])
    }

    /// Registers a workspace with `quota` bytes.
    pub async fn register_workspace(&self, ws: &str, quota: u64) {
        self.registry
            .clone()
            .register_workspace(authed(
                &self.service_token(),
                v1::RegisterWorkspaceRequest {
                    workspace_id: ws.into(),
                    quota_bytes: quota,
                    refuse_duplicates: None,
                },
            ))
            .await
            .expect("workspace registers");
    }

    /// Registers a target owned by `owner` in `ws`.
    pub async fn register_target(&self, target: v1::Target, ws: &str, owner: &str) {
        self.registry
            .clone()
            .register_target(authed(
                &self.service_token(),
                v1::RegisterTargetRequest {
                    target: Some(target),
                    workspace_id: ws.into(),
                    owner: owner.into(),
                },
            ))
            .await
            .expect("target registers");
    }

    /// Uploads `bytes` in 64 KiB chunks.
    pub async fn upload(
        &self,
        token: &str,
        target: v1::Target,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<v1::UploadImageResponse, Status> {
        let header = header(target, content_type, bytes);
        self.upload_messages(token, messages(header, bytes, 64 * 1024))
            .await
    }

    /// Sends exactly these messages.
    pub async fn upload_messages(
        &self,
        token: &str,
        messages: Vec<v1::UploadImageRequest>,
    ) -> Result<v1::UploadImageResponse, Status> {
        self.ingest
            .clone()
            .upload_image(authed(token, tokio_stream::iter(messages)))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `GetImage`.
    pub async fn get_image(
        &self,
        token: &str,
        target: v1::Target,
    ) -> Result<v1::ImageInfo, Status> {
        self.get_image_for(token, target, "").await
    }

    /// `GetImage` acting for `owner` (empty: the caller).
    pub async fn get_image_for(
        &self,
        token: &str,
        target: v1::Target,
        owner: &str,
    ) -> Result<v1::ImageInfo, Status> {
        self.ingest
            .clone()
            .get_image(authed(
                token,
                v1::GetImageRequest {
                    target: Some(target),
                    owner: owner.to_owned(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `DeleteImage`.
    pub async fn delete_image(&self, token: &str, target: v1::Target) -> Result<u64, Status> {
        self.delete_image_for(token, target, "").await
    }

    /// `DeleteImage` acting for `owner` (empty: the caller).
    pub async fn delete_image_for(
        &self,
        token: &str,
        target: v1::Target,
        owner: &str,
    ) -> Result<u64, Status> {
        self.ingest
            .clone()
            .delete_image(authed(
                token,
                v1::DeleteImageRequest {
                    target: Some(target),
                    owner: owner.to_owned(),
                },
            ))
            .await
            .map(|r| r.into_inner().released_bytes)
    }

    /// `ListImages` of loose receipts: `owner`'s (empty: the caller's), one page.
    pub async fn list(
        &self,
        token: &str,
        owner: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<v1::ListImagesResponse, Status> {
        self.ingest
            .clone()
            .list_images(authed(
                token,
                v1::ListImagesRequest {
                    kind: v1::TargetKind::Receipt as i32,
                    owner: owner.into(),
                    page_size,
                    page_token: page_token.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `GetUsage`.
    pub async fn usage(&self, token: &str, ws: &str) -> Result<v1::Usage, Status> {
        self.ingest
            .clone()
            .get_usage(authed(
                token,
                v1::GetUsageRequest {
                    workspace_id: ws.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `StartUpload` for `header`.
    pub async fn start_upload(
        &self,
        token: &str,
        header: v1::UploadHeader,
    ) -> Result<v1::UploadStatus, Status> {
        self.ingest
            .clone()
            .start_upload(authed(
                token,
                v1::StartUploadRequest {
                    header: Some(header),
                    client_metadata: String::new(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `QueryUpload`.
    pub async fn query_upload(&self, token: &str, id: &str) -> Result<v1::UploadStatus, Status> {
        self.ingest
            .clone()
            .query_upload(authed(
                token,
                v1::QueryUploadRequest {
                    upload_id: id.into(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `CancelUpload`; the bytes it released.
    pub async fn cancel_upload(&self, token: &str, id: &str) -> Result<u64, Status> {
        self.ingest
            .clone()
            .cancel_upload(authed(
                token,
                v1::CancelUploadRequest {
                    upload_id: id.into(),
                },
            ))
            .await
            .map(|response| response.into_inner().released_bytes)
    }

    /// Writes `bytes` to the session `id` at `offset` in 64 KiB chunks.
    pub async fn write_upload(
        &self,
        token: &str,
        id: &str,
        offset: u64,
        bytes: &[u8],
        finish: bool,
    ) -> Result<v1::UploadImageResponse, Status> {
        let header = v1::UploadHeader {
            upload_id: id.into(),
            write_offset: offset,
            finish_write: finish,
            ..Default::default()
        };
        self.upload_messages(token, messages(header, bytes, 64 * 1024))
            .await
    }

    /// Every object in storage.
    pub async fn objects(&self) -> Vec<ObjectEntry> {
        self.backends.store.list("").await.expect("list")
    }

    /// A stored object's bytes.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        self.backends
            .store
            .get(key)
            .await
            .expect("get")
            .expect("exists")
            .to_vec()
    }

    /// The quota counter of `ws`.
    pub async fn used(&self, ws: &str) -> u64 {
        self.backends.quota.used(ws).await.expect("used")
    }

    /// Fetches a URL handed out by the service.
    pub async fn fetch(&self, url: &str) -> (u16, Vec<u8>) {
        let response = reqwest::get(url).await.expect("GET url");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("body").to_vec())
    }
}
