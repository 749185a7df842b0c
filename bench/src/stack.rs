//! The real stack as separate processes, for the upload benchmark: `redis-server`, the bench's
//! `s3-server` (s3s-fs over HTTP with SigV4), the release `ingest-service` configured through
//! `APP__*` variables for S3 storage and Redis state, and the release `gateway` pointed at it.
//! Each runs on a free port of 127.0.0.1 and is killed when [`Stack`] is dropped; logs and
//! working directories live in a temporary directory removed with it.

use anyhow::{Context, bail};
use imaging_e2e::{RedisServer, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, free_port};
use imaging_proto::v1;
use imaging_proto::v1::target_registry_client::TargetRegistryClient;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How long a process may take to answer after it is started.
/// How long the stack may take to start (a service under valgrind takes a while).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Region sent in S3 signatures (s3s-fs accepts any).
pub const S3_REGION: &str = "us-east-1";

/// A child process that is killed and reaped when dropped. A child started with a piped stdin
/// is first asked to stop by closing that pipe, and given a moment to clean up.
#[derive(Debug)]
pub struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl ChildGuard {
    /// Starts `command` as the process called `name` (in messages).
    pub fn spawn(name: &'static str, command: &mut Command) -> anyhow::Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self { name, child })
    }

    /// Process ID (for `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }

    /// Stops the process (idempotent).
    pub fn stop(&mut self) {
        if let Some(stdin) = self.child.stdin.take() {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the binaries are and how the service is configured.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Directory holding `ingest-service`, `gateway`, `imaging-cli` and `s3-server`.
    pub bin_dir: PathBuf,
    /// HS256 secret shared by the service and the token minting.
    pub secret: String,
    /// Default workspace quota of the service, in bytes.
    pub quota_bytes: u64,
    /// The service's `storage.payload`: how its PUTs prove their bodies to the S3 server
    /// (`auto`, which is `signed` for the bench's `http` endpoint, or `checksum`).
    pub s3_payload: String,
    /// More `APP__*` settings of the service.
    pub service_env: Vec<(String, String)>,
    /// A command the service runs under (e.g. `valgrind --tool=callgrind`); empty: none.
    pub service_wrapper: Vec<String>,
}

impl StackOptions {
    /// The directory of the running executable: `target/release` when the bench is built with
    /// `cargo build --release`, next to the release service and gateway binaries.
    pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe().context("locating this executable")?;
        exe.parent()
            .map(Path::to_path_buf)
            .context("this executable has no parent directory")
    }
}

/// The running stack. Fields drop in order: gateway, service, S3, Redis, then the directory.
pub struct Stack {
    gateway: ChildGuard,
    service: ChildGuard,
    _s3: ChildGuard,
    redis: RedisServer,
    dir: tempfile::TempDir,
    options: StackOptions,
    grpc_port: u16,
    gateway_port: u16,
    /// Endpoint of the S3 server, e.g. `http://127.0.0.1:41234`.
    pub s3_endpoint: String,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("service_pid", &self.service.pid())
            .field("gateway_pid", &self.gateway.pid())
            .field("grpc_port", &self.grpc_port)
            .field("gateway_port", &self.gateway_port)
            .field("redis_port", &self.redis.port)
            .field("s3_endpoint", &self.s3_endpoint)
            .finish()
    }
}

/// Environment variables that must not leak from the caller into the children.
fn scrub(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("APP_") || name.starts_with("OTEL_") || name == "GATEWAY_CONFIG" {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// `/dev/shm` if it is a writable directory: the S3 server keeps its objects there, so that
/// every route's PUTs land in memory and the disk's writeback (which made the same PUT cost 17
/// or 35 ms of S3 server CPU from one run to the next) stays out of the comparison. Every route
/// writes through the same S3 server, so the ratios compare what each route adds to it.
fn memory_backed_tmpdir() -> Option<&'static str> {
    // Making (and dropping) a directory there is the whole test.
    tempfile::tempdir_in("/dev/shm")
        .is_ok()
        .then_some("/dev/shm")
}

fn binary(options: &StackOptions, name: &str) -> anyhow::Result<PathBuf> {
    let path = options.bin_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release --bin ingest-service --bin gateway \
             --bin imaging-cli && cargo build --release -p imaging-bench --bins",
            path.display()
        );
    }
    Ok(path)
}

impl Stack {
    /// Starts every process and waits until each answers.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("imaging-bench-")
            .tempdir()
            .context("creating the bench's temporary directory")?;
        let redis = RedisServer::start();

        let mut s3 = ChildGuard::spawn(
            "s3-server",
            scrub(&mut Command::new(binary(&options, "s3-server")?))
                .envs(memory_backed_tmpdir().map(|dir| ("TMPDIR", dir)))
                .arg("--exit-with-stdin")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )?;
        let s3_endpoint = read_endpoint(&mut s3)?;

        let grpc_port = free_port();
        let gateway_port = free_port();
        let mut stack = Self {
            gateway: spawn_gateway(&options, dir.path(), gateway_port, grpc_port)?,
            service: spawn_service(&options, dir.path(), grpc_port, &redis.url(), &s3_endpoint)?,
            _s3: s3,
            redis,
            dir,
            options,
            grpc_port,
            gateway_port,
            s3_endpoint,
        };
        stack.wait_service().await?;
        stack.wait_gateway().await?;
        Ok(stack)
    }

    /// gRPC URL of the ingest service.
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Base URL of the gateway.
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }

    /// PID of the ingest service.
    pub fn service_pid(&self) -> u32 {
        self.service.pid()
    }

    /// PID of the gateway.
    pub fn gateway_pid(&self) -> u32 {
        self.gateway.pid()
    }

    /// PID of the S3 server.
    pub fn s3_pid(&self) -> u32 {
        self._s3.pid()
    }

    /// Stops the ingest service and starts a fresh one on the same port (Redis and S3 keep
    /// their data), then waits until both it and the gateway answer again.
    pub async fn restart_service(&mut self) -> anyhow::Result<()> {
        self.service.stop();
        self.service = spawn_service(
            &self.options,
            self.dir.path(),
            self.grpc_port,
            &self.redis.url(),
            &self.s3_endpoint,
        )?;
        self.wait_service().await?;
        self.wait_gateway().await
    }

    /// Sets the service's extra settings for its next (re)start.
    pub fn set_service_env(&mut self, env: Vec<(String, String)>) {
        self.options.service_env = env;
    }

    /// Stops the gateway and starts a fresh one on the same port.
    pub async fn restart_gateway(&mut self) -> anyhow::Result<()> {
        self.gateway.stop();
        self.gateway = spawn_gateway(
            &self.options,
            self.dir.path(),
            self.gateway_port,
            self.grpc_port,
        )?;
        self.wait_gateway().await
    }

    /// Mints an HS256 token with the release `imaging-cli` and the stack's secret.
    pub fn token(&self, sub: &str, ws: &str, roles: &str, perms: &str) -> anyhow::Result<String> {
        let output = scrub(&mut Command::new(binary(&self.options, "imaging-cli")?))
            .env("APP__AUTH__HS256_SECRET", &self.options.secret)
            .args(["token", "--sub", sub, "--ws", ws, "--ttl", "86400"])
            .args(["--roles", roles, "--perms", perms])
            .stdin(Stdio::null())
            .output()
            .context("running imaging-cli token")?;
        if !output.status.success() {
            bail!(
                "imaging-cli token failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)
            .context("token is not UTF-8")?
            .trim()
            .to_owned())
    }

    /// Waits until the service accepts gRPC connections.
    async fn wait_service(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.service
                .check_running()
                .with_context(|| self.log_hint("ingest-service.log"))?;
            if Channel::from_shared(self.grpc_url())?
                .connect()
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "ingest-service did not answer on {}; {}",
                    self.grpc_url(),
                    self.log_hint("ingest-service.log")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the gateway's `/readyz` (which checks the service's health) answers 200.
    async fn wait_gateway(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.gateway_url());
        loop {
            self.gateway
                .check_running()
                .with_context(|| self.log_hint("gateway.log"))?;
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "gateway not ready at {url}; {}",
                    self.log_hint("gateway.log")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_hint(&self, file: &str) -> String {
        let path = self.dir.path().join(file);
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("last lines of {}:\n{}", path.display(), tail.join("\n"))
    }

    /// A registry client authorised as an internal service.
    pub async fn registry(&self) -> anyhow::Result<Registry> {
        let token = self.token("bench-registry", "*", "service", "")?;
        let client = TargetRegistryClient::connect(self.grpc_url())
            .await
            .context("connecting to the target registry")?;
        Ok(Registry { client, token })
    }
}

/// Registers workspaces and targets.
#[derive(Debug, Clone)]
pub struct Registry {
    client: TargetRegistryClient<Channel>,
    token: String,
}

/// `message` with `authorization: Bearer <token>` metadata.
pub fn authorized<T>(token: &str, message: T) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("token is not valid metadata")?,
    );
    Ok(request)
}

impl Registry {
    /// Registers workspace `id` with a quota of `quota_bytes`.
    pub async fn workspace(&mut self, id: &str, quota_bytes: u64) -> anyhow::Result<()> {
        let request = v1::RegisterWorkspaceRequest {
            workspace_id: id.to_owned(),
            quota_bytes,
            refuse_duplicates: None,
        };
        self.client
            .register_workspace(authorized(&self.token, request)?)
            .await
            .with_context(|| format!("registering workspace {id}"))?;
        Ok(())
    }

    /// Registers a target of `kind` with `id` in `workspace`, owned by `owner`.
    pub async fn target(
        &mut self,
        kind: v1::TargetKind,
        id: &str,
        workspace: &str,
        owner: &str,
    ) -> anyhow::Result<()> {
        let target_workspace = if kind == v1::TargetKind::WorkspaceExpense {
            workspace.to_owned()
        } else {
            String::new()
        };
        let request = v1::RegisterTargetRequest {
            target: Some(v1::Target {
                kind: kind as i32,
                id: id.to_owned(),
                workspace_id: target_workspace,
            }),
            workspace_id: workspace.to_owned(),
            owner: owner.to_owned(),
        };
        self.client
            .register_target(authorized(&self.token, request)?)
            .await
            .with_context(|| format!("registering target {id}"))?;
        Ok(())
    }
}

/// Reads the endpoint the `s3-server` prints first.
pub fn read_endpoint(s3: &mut ChildGuard) -> anyhow::Result<String> {
    let stdout = s3.child.stdout.take().context("s3-server stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the s3-server endpoint")?;
    let endpoint = line.trim().to_owned();
    if !endpoint.starts_with("http://") {
        s3.check_running()?;
        bail!("s3-server printed {endpoint:?} instead of its endpoint");
    }
    Ok(endpoint)
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(dir.join(name)).with_context(|| format!("creating {name}"))
}

fn spawn_service(
    options: &StackOptions,
    dir: &Path,
    grpc_port: u16,
    redis_url: &str,
    s3_endpoint: &str,
) -> anyhow::Result<ChildGuard> {
    let log = log_file(dir, "ingest-service.log")?;
    let service = binary(options, "ingest-service")?;
    let mut command = match options.service_wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(&service);
            command
        }
        None => Command::new(&service),
    };
    ChildGuard::spawn(
        "ingest-service",
        scrub(&mut command)
            .current_dir(dir)
            .env("APP__SERVER__GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
            .env("APP__STORAGE__BACKEND", "s3")
            .env("APP__STORAGE__ENDPOINT", s3_endpoint)
            .env("APP__STORAGE__REGION", S3_REGION)
            .env("APP__STORAGE__BUCKET", S3_BUCKET)
            .env("APP__STORAGE__ACCESS_KEY", S3_ACCESS_KEY)
            .env("APP__STORAGE__SECRET_KEY", S3_SECRET_KEY)
            .env("APP__STORAGE__PAYLOAD", &options.s3_payload)
            .env("APP__STATE__BACKEND", "redis")
            .env("APP__STATE__URL", redis_url)
            .env("APP__AUTH__HS256_SECRET", &options.secret)
            .env(
                "APP__LIMITS__QUOTA__DEFAULT_BYTES",
                options.quota_bytes.to_string(),
            )
            // The load comes from one user of one workspace: the per-user and per-workspace
            // caps (fairness between tenants) would cut it at 8; the global cap still applies.
            .env("APP__LIMITS__ADMISSION__MAX_PER_USER", "1024")
            .env("APP__LIMITS__ADMISSION__MAX_PER_WORKSPACE", "1024")
            // Conversions past the memory budget wait for room instead of being shed, so the
            // rows measure throughput under the budget rather than refusals.
            .env("APP__LIMITS__ADMISSION__MEMORY_WAIT_MILLIS", "120000")
            .envs(options.service_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )
}

fn spawn_gateway(
    options: &StackOptions,
    dir: &Path,
    port: u16,
    grpc_port: u16,
) -> anyhow::Result<ChildGuard> {
    let log = log_file(dir, "gateway.log")?;
    ChildGuard::spawn(
        "gateway",
        scrub(&mut Command::new(binary(options, "gateway")?))
            .current_dir(dir)
            .env("APP__SERVER__LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("APP__INGEST__URL", format!("http://127.0.0.1:{grpc_port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
    )
}
