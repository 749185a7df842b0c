//! `spawn_stack`: ingest service (S3 + Redis) and gateway on free ports, and a `TestStack` with
//! what a client and an operator would check.

use imaging_e2e::{RedisServer, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};
use imaging_proto::v1;
use imaging_proto::v1::target_registry_client::TargetRegistryClient;
use imaging_service::auth::{Claims, mint_hs256};
use imaging_service::configuration::{Settings, StateSettings, StorageSettings};
use imaging_service::startup::Backends;
use imaging_service::storage::ObjectEntry;

/// Dev-only secret of the test service.
const SECRET: &str = "e2e-secret";

/// A running stack.
pub struct TestStack {
    /// Gateway base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    pub http: reqwest::Client,
    pub backends: Backends,
    grpc: String,
    pub redis: RedisServer,
    _s3: S3Server,
    _data: tempfile::TempDir,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestStack {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// Starts Redis, S3, the ingest service and the gateway.
pub async fn spawn_stack() -> TestStack {
    let redis = RedisServer::start();
    let s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::embedded(data.path());
    settings.server.grpc_addr = "127.0.0.1:0".into();
    settings.auth.hs256_secret = SECRET.into();
    settings.state = StateSettings::Redis {
        url: redis.url(),
        key_prefix: "e2e:".into(),
    };
    settings.storage = StorageSettings::S3 {
        endpoint: s3.endpoint.clone(),
        region: "us-east-1".into(),
        bucket: S3_BUCKET.into(),
        access_key: S3_ACCESS_KEY.into(),
        secret_key: S3_SECRET_KEY.into(),
        public_endpoint: String::new(),
    };
    let service = imaging_service::startup::Application::build(settings)
        .await
        .unwrap();
    let grpc = format!("http://127.0.0.1:{}", service.grpc_port());
    let backends = service.backends().clone();
    let (stop_service, service_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service.run_until(async {
        let _ = service_stopped.await;
    }));

    let gateway_settings = imaging_gateway::configuration::Settings::for_ingest(grpc.clone());
    let gateway = imaging_gateway::startup::Application::build(gateway_settings)
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", gateway.port());
    let (stop_gateway, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway.run_until(async {
        let _ = gateway_stopped.await;
    }));

    TestStack {
        base,
        http: reqwest::Client::new(),
        backends,
        grpc,
        redis,
        _s3: s3,
        _data: data,
        stops: vec![stop_service, stop_gateway],
    }
}

impl TestStack {
    /// A token for `sub` in `ws` with `roles` and `perms`.
    pub fn token(&self, sub: &str, ws: &str, roles: &[&str], perms: &[&str]) -> String {
        self.token_expiring(sub, ws, roles, perms, 3600)
    }

    /// A token expiring in `seconds`.
    pub fn token_expiring(
        &self,
        sub: &str,
        ws: &str,
        roles: &[&str],
        perms: &[&str],
        seconds: i64,
    ) -> String {
        let claims = Claims::expiring_in(sub, ws, roles, perms, seconds);
        mint_hs256(SECRET, &claims).unwrap()
    }

    fn registry_request<T>(&self, message: T) -> tonic::Request<T> {
        let token = self.token("registry", "internal", &["service"], &[]);
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    /// Registers a workspace (0 = default quota).
    pub async fn register_workspace(&self, ws: &str, quota: u64) {
        let mut registry = TargetRegistryClient::connect(self.grpc.clone())
            .await
            .unwrap();
        registry
            .register_workspace(self.registry_request(v1::RegisterWorkspaceRequest {
                workspace_id: ws.into(),
                quota_bytes: quota,
            }))
            .await
            .unwrap();
    }

    /// Registers a target of `kind`.
    pub async fn register_target(&self, kind: v1::TargetKind, id: &str, ws: &str, owner: &str) {
        let mut registry = TargetRegistryClient::connect(self.grpc.clone())
            .await
            .unwrap();
        let workspace_id = if kind == v1::TargetKind::WorkspaceExpense {
            ws.to_owned()
        } else {
            String::new()
        };
        registry
            .register_target(self.registry_request(v1::RegisterTargetRequest {
                target: Some(v1::Target {
                    kind: kind as i32,
                    id: id.into(),
                    workspace_id,
                }),
                workspace_id: ws.into(),
                owner: owner.into(),
            }))
            .await
            .unwrap();
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs raw bytes with a content type and an `OAuth` token.
    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("Authorization", format!("OAuth {token}"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// GETs with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Every stored object.
    pub async fn objects(&self) -> Vec<ObjectEntry> {
        self.backends.store.list("").await.unwrap()
    }

    /// A workspace's quota counter.
    pub async fn used(&self, ws: &str) -> u64 {
        self.backends.quota.used(ws).await.unwrap()
    }
}

/// The text between `<{tag}>` and `</{tag}>`.
pub fn xml_text(body: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = body
        .find(&open)
        .map(|i| i + open.len())
        .unwrap_or_else(|| panic!("no <{tag}> in {body}"));
    let end = body[start..].find(&close).unwrap() + start;
    body[start..end].to_owned()
}

/// Undoes XML escaping of a URL.
pub fn unescape(text: &str) -> String {
    text.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
}
