//! `spawn_stack`: the ingest service (real S3 and Redis, from [`crate::service`]) and the
//! gateway on free ports, and a `TestStack` with what a client and an operator would check.

pub use crate::service::Stack;
use crate::service::{TestApp, spawn_app_with};
use imaging_proto::v1;
use ingest_service::configuration::Settings;
use ingest_service::startup::Backends;
use ingest_service::storage::ObjectEntry;

/// A running stack.
pub struct TestStack {
    /// Gateway base URL, e.g. `http://127.0.0.1:41234`.
    pub base: String,
    pub http: reqwest::Client,
    pub backends: Backends,
    /// The ingest service's gRPC URL.
    pub grpc: String,
    /// The ingest service and its servers.
    pub app: TestApp,
    stop_gateway: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestStack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_gateway.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts Redis, S3, the ingest service and the gateway.
pub async fn spawn_stack() -> TestStack {
    spawn_stack_with(|_| {}).await
}

/// The same, after `tweak` adjusts the ingest service's settings.
pub async fn spawn_stack_with(tweak: impl FnOnce(&mut Settings)) -> TestStack {
    spawn_stack_tuned(tweak, |_| {}).await
}

/// The same, after `tune_service` and `tune_gateway` adjust the two processes' settings.
pub async fn spawn_stack_tuned(
    tune_service: impl FnOnce(&mut Settings),
    tune_gateway: impl FnOnce(&mut gateway::configuration::Settings),
) -> TestStack {
    spawn_stack_on(Stack::Real, tune_service, tune_gateway).await
}

/// The whole stack with the ingest service on `stack`'s backends (the embedded default, or S3
/// and Redis, ...).
pub async fn spawn_stack_on(
    stack: Stack,
    tune_service: impl FnOnce(&mut Settings),
    tune_gateway: impl FnOnce(&mut gateway::configuration::Settings),
) -> TestStack {
    let app = spawn_app_with(stack, tune_service).await;
    let (base, stop_gateway) = start_gateway(&app.addr, tune_gateway).await;
    TestStack {
        base,
        http: reqwest::Client::new(),
        backends: app.backends.clone(),
        grpc: app.addr.clone(),
        app,
        stop_gateway: Some(stop_gateway),
    }
}

/// A gateway in front of the ingest service at `ingest` (its gRPC URL); its base URL, and what
/// stops it.
pub async fn start_gateway(
    ingest: &str,
    tune_gateway: impl FnOnce(&mut gateway::configuration::Settings),
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut gateway_settings = gateway::configuration::Settings::for_ingest(ingest.to_owned());
    tune_gateway(&mut gateway_settings);
    let application = gateway::startup::Application::build(gateway_settings)
        .await
        .expect("the gateway builds");
    let base = format!("http://127.0.0.1:{}", application.port());
    let (stop_gateway, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(application.run_until(async {
        let _ = gateway_stopped.await;
    }));
    (base, stop_gateway)
}

/// A second ingest service on the same backends as `stack`'s (its Redis and S3), with a gateway
/// of its own: another replica.
pub struct Replica {
    /// Its gateway's base URL.
    pub base: String,
    /// The service.
    pub app: TestApp,
    _stop_gateway: tokio::sync::oneshot::Sender<()>,
}

impl TestStack {
    /// Starts another replica on this stack's backends.
    pub async fn replica(&self) -> Replica {
        let (state, storage) = (
            self.app.settings.state.clone(),
            self.app.settings.storage.clone(),
        );
        let app = spawn_app_with(crate::service::Stack::Embedded, move |settings| {
            settings.state = state;
            settings.storage = storage;
        })
        .await;
        let (base, stop) = start_gateway(&app.addr, |_| {}).await;
        Replica {
            base,
            app,
            _stop_gateway: stop,
        }
    }
}

impl TestStack {
    /// Signals the ingest service to stop: it refuses new uploads and drains.
    pub fn stop_service(&mut self) {
        self.app.stop();
    }

    /// A token for `sub` in `ws` with `roles` and `perms`.
    pub fn token(&self, sub: &str, ws: &str, roles: &[&str], perms: &[&str]) -> String {
        self.app.token(sub, ws, roles, perms)
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
        self.app.token_expiring(sub, ws, roles, perms, seconds)
    }

    /// Registers a workspace (0 = default quota).
    pub async fn register_workspace(&self, ws: &str, quota: u64) {
        self.app.register_workspace(ws, quota).await;
    }

    /// Registers a target of `kind`.
    pub async fn register_target(&self, kind: v1::TargetKind, id: &str, ws: &str, owner: &str) {
        let workspace_id = if kind == v1::TargetKind::WorkspaceExpense {
            ws.to_owned()
        } else {
            String::new()
        };
        let target = v1::Target {
            kind: kind as i32,
            id: id.into(),
            workspace_id,
        };
        self.app.register_target(target, ws, owner).await;
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
            .expect("the gateway answers")
    }

    /// GETs with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// The bytes behind an image: GETs `path` (an `<Image>` document), then its expiring `Url`.
    pub async fn image_bytes(&self, path: &str, token: &str) -> Vec<u8> {
        let body = self
            .get(path, token)
            .await
            .text()
            .await
            .expect("an <Image> document");
        let url = unescape(&xml_text(&body, "Url"));
        reqwest::get(url)
            .await
            .expect("the image URL answers")
            .bytes()
            .await
            .expect("the image's bytes")
            .to_vec()
    }

    /// Every stored object.
    pub async fn objects(&self) -> Vec<ObjectEntry> {
        self.app.objects().await
    }

    /// A workspace's quota counter.
    pub async fn used(&self, ws: &str) -> u64 {
        self.app.used(ws).await
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
    let end = body[start..]
        .find(&close)
        .map(|i| i + start)
        .unwrap_or_else(|| panic!("no </{tag}> in {body}"));
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
