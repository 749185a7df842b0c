//! Real servers for tests: a `redis-server` child process on a free port, an in-process S3
//! server (`s3s-fs`) over HTTP with SigV4 credentials, and a second S3 implementation (moto's
//! server, a child process) for the operations `s3s-fs` lacks. All stop when dropped.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `redis-server` process that lives as long as this value.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    /// Where it keeps its append-only file, if it persists.
    data: Option<tempfile::TempDir>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port, keeping nothing on disk, and waits until it
    /// answers.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts one that writes every change to an append-only file before answering, so that a
    /// SIGKILL and a restart ([`RedisServer::restart`]) keep every acknowledged write.
    pub fn start_persistent() -> Self {
        Self::start_with(Some(tempfile::tempdir().expect("temp dir")))
    }

    fn start_with(data: Option<tempfile::TempDir>) -> Self {
        let port = free_port();
        let child = Self::spawn(port, data.as_ref());
        let server = Self { child, port, data };
        server.wait_ready();
        server
    }

    fn spawn(port: u16, data: Option<&tempfile::TempDir>) -> Child {
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        match data {
            Some(dir) => command.args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &dir.path().to_string_lossy(),
            ]),
            None => command.args(["--appendonly", "no"]),
        };
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)")
    }

    fn wait_ready(&self) {
        wait_for_pong(self.port);
    }

    /// Connection URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server with SIGKILL (to test outages).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it (SIGKILL) and starts it again on the same port (with its data, if it
    /// persists).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, self.data.as_ref());
        self.wait_ready();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `nats-server -js` process (JetStream on, its store in a temporary directory) on a free
/// port; it lives as long as this value and keeps its store across [`NatsServer::restart`].
pub struct NatsServer {
    child: Child,
    pub port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server` with JetStream and waits until it accepts connections.
    pub fn start() -> Self {
        let port = free_port();
        let store = tempfile::tempdir().expect("temp dir");
        let child = Self::spawn(port, &store);
        let server = Self { child, port, store };
        wait_for_port(port);
        server
    }

    fn spawn(port: u16, store: &tempfile::TempDir) -> Child {
        Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-sd",
                &store.path().to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (the README's test command installs it)")
    }

    /// Connection URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same store (after [`NatsServer::stop`], or
    /// killing it first).
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, &self.store);
        wait_for_port(self.port);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until something accepts connections on `port` (at most ten seconds).
fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real Redis Cluster of three primaries (no replicas) on free loopback ports, made with
/// `redis-server --cluster-enabled yes` and `redis-cli --cluster create`; it lives as long as
/// this value.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three nodes, joins them into one cluster covering every slot, and waits until
    /// every node reports the cluster ready.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ports = Vec::new();
        let mut nodes = Vec::new();
        while ports.len() < 3 {
            let port = free_port();
            let bus = free_port();
            if ports.contains(&port) || port == bus {
                continue;
            }
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--dir",
                    &node_dir.to_string_lossy(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (the README's test command installs it)");
            // A port found free may be taken by another test before the node binds it: the node
            // then exits, and is started again on other ports.
            if started(&mut child, port) {
                nodes.push(child);
                ports.push(port);
            } else {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let cluster = Self {
            nodes,
            ports,
            _dir: dir,
        };
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed (the README's test command installs it)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.ports.iter().all(|port| cluster_ready(*port)) {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// Connection URL naming every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// Sends one inline command and returns the raw reply (tests only).
fn ask(port: u16, command: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// True once the node answers PING; false if it exited (its port was taken) or stayed silent
/// for 10 seconds.
fn started(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ask(port, "PING").is_some_and(|reply| reply.starts_with("+PONG")) {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn wait_for_pong(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ask(port, "PING").is_some_and(|reply| reply.starts_with("+PONG")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not start on port {port}");
}

fn cluster_ready(port: u16) -> bool {
    ask(port, "CLUSTER INFO").is_some_and(|reply| reply.contains("cluster_state:ok"))
}

/// Dev-only credentials of the test S3 server.
pub const S3_ACCESS_KEY: &str = "test-access-key";
/// Dev-only credentials of the test S3 server.
pub const S3_SECRET_KEY: &str = "test-secret-key";
/// Bucket created for each test.
pub const S3_BUCKET: &str = "receipts";

/// An S3 server (`s3s-fs`) served over HTTP in this process, with SigV4 auth.
pub struct S3Server {
    pub endpoint: String,
    port: u16,
    root: tempfile::TempDir,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Tells every open connection to close at once (a stopped server).
    stopped: tokio::sync::watch::Sender<bool>,
}

impl S3Server {
    /// Starts the server with one empty bucket.
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(S3_BUCKET)).expect("bucket dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind s3");
        let port = listener.local_addr().expect("addr").port();
        let (stopped, _) = tokio::sync::watch::channel(false);
        let mut server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            root,
            task: None,
            stopped,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        use s3s::auth::SimpleAuth;
        use s3s::service::S3ServiceBuilder;

        let fs = s3s_fs::FileSystem::new(self.root.path()).expect("s3s-fs root");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY));
        let service = builder.build();
        self.stopped.send_replace(false);
        let stopped = self.stopped.subscribe();
        self.task = Some(tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        _ = stopped.wait_for(|stopped| *stopped) => {}
                    }
                });
            }
        }));
    }

    /// Stops it at once: the listener closes and every open connection is dropped mid-request,
    /// as when the server dies. Stored objects stay on disk.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.stopped.send_replace(true);
    }

    /// Starts it again on the same port with the same objects.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(err) => {
                    assert!(Instant::now() < deadline, "rebinding the S3 port: {err}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.serve(listener);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// moto's S3 server (`python3 -m moto.server`, installed by the README's test command) on a free
/// port, with the bucket [`S3_BUCKET`] created: an S3 implementation written elsewhere that has
/// what `s3s-fs` lacks (listing and aborting multipart uploads). It accepts any credentials.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts it and waits until it answers, then creates the bucket.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed");
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let bucket = format!("{}/{S3_BUCKET}", server.endpoint);
        loop {
            // A bucket is created by a PUT to its name (moto checks no signature).
            let created = std::process::Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-X",
                    "PUT",
                    &bucket,
                ])
                .output()
                .ok()
                .filter(|out| out.stdout.starts_with(b"200"));
            if created.is_some() {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "moto's S3 server did not start (the README's test command installs moto[server])"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
