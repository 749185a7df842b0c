//! The service binary run as a child process on the embedded default, on free ports: for
//! tests that measure the process (peak RSS) or signal it.

use crate::helpers::authed;
use imaging_proto::v1;
use std::process::Child;
use std::time::Duration;

/// The HS256 secret the child verifies tokens with.
pub const SECRET: &str = "process-test";
/// The key the child signs file URLs with.
pub const URL_SIGNING_KEY: &str = "process-test-url-key";

/// A running `ingest-service`; killed when dropped.
pub struct ServiceProcess {
    child: Option<Child>,
    /// `host:port` of its gRPC listener.
    pub addr: String,
    /// `host:port` of its file server.
    pub files_addr: String,
    /// Its data directory (objects under `objects/`).
    pub data: tempfile::TempDir,
    /// The extra settings it was started with.
    env: Vec<(String, String)>,
}

impl ServiceProcess {
    /// Starts the service and waits until it accepts connections.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The same, with more `APP__*` settings.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let mut service = ServiceProcess {
            child: None,
            addr: format!("127.0.0.1:{}", imaging_e2e::free_port()),
            files_addr: format!("127.0.0.1:{}", imaging_e2e::free_port()),
            data: tempfile::tempdir().unwrap(),
            env: env
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        };
        service.spawn().await;
        service
    }

    async fn spawn(&mut self) {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ingest-service"))
            .env("APP__SERVER__GRPC_ADDR", &self.addr)
            .env("APP__SERVER__FILES_ADDR", &self.files_addr)
            .env("APP__STORAGE__ROOT", self.data.path().join("objects"))
            .env("APP__STATE__PATH", self.data.path().join("state.redb"))
            .env("APP__AUTH__HS256_SECRET", SECRET)
            .env("APP__STORAGE__URL_SIGNING_KEY", URL_SIGNING_KEY)
            .env_remove("IMAGING_JOB_FAILPOINT")
            .env_remove("IMAGING_RELAY_FAILPOINT")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets (or with `None` removes) an environment variable for the next start.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(existing, _)| existing != name);
        if let Some(value) = value {
            self.env.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Kills it with SIGKILL (no drain, no cleanup) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data after [`ServiceProcess::kill`].
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap()
    }

    /// Its peak resident memory (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// A token for `sub` in `ws` with `roles`, valid for ten minutes.
    pub fn token(&self, sub: &str, ws: &str, roles: &[&str]) -> String {
        let claims = ingest_service::auth::Claims::expiring_in(sub, ws, roles, &[], 600);
        ingest_service::auth::mint_hs256(SECRET, &claims).unwrap()
    }

    /// A connected channel to its gRPC listener.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Registers `workspace` (default quota) with the platform registry's token.
    pub async fn register_workspace(&self, channel: &tonic::transport::Channel, workspace: &str) {
        v1::target_registry_client::TargetRegistryClient::new(channel.clone())
            .register_workspace(authed(
                &self.token("registry", "*", &["service"]),
                v1::RegisterWorkspaceRequest {
                    workspace_id: workspace.into(),
                    quota_bytes: 0,
                    refuse_duplicates: None,
                },
            ))
            .await
            .unwrap();
    }

    /// Hands the child over (to signal it and wait for it); it is no longer killed on drop.
    pub fn take_child(&mut self) -> Child {
        self.child.take().unwrap()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
