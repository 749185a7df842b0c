//! Several replicas: two `ingest-service` processes on one state backend (one Redis, or a
//! Redis Cluster) and one S3 server, with uploads split across both. Target locks expire after
//! a few milliseconds, so only the compare-and-set of the records keeps the writers apart; one
//! test pauses a process (SIGSTOP) while it holds a lock, past the lock's TTL.

use crate::helpers::{authed, expense, header, messages, reason, target};
use crate::process::ServiceProcess;
use imaging_e2e::fixtures::{jpeg, pdf, pdf_pages, png};
use imaging_e2e::{RedisCluster, RedisServer, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};
use imaging_proto::v1;
use imaging_proto::v1::TargetKind;
use ingest_service::configuration::{StateSettings, StorageSettings};
use ingest_service::startup::{state_backend, storage_backend};
use ingest_service::state::{Catalog, Quota};
use ingest_service::storage::ObjectStore;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// Two service processes and direct handles on the backends they share.
struct Replicas {
    processes: Vec<ServiceProcess>,
    channels: Vec<Channel>,
    store: Arc<dyn ObjectStore>,
    quota: Arc<dyn Quota>,
    catalog: Arc<dyn Catalog>,
    _s3: S3Server,
}

const PREFIX: &str = "replicas:";

impl Replicas {
    async fn start(state_url: &str, lock_ttl_millis: u64) -> Self {
        let s3 = S3Server::start().await;
        let lock_ttl = lock_ttl_millis.to_string();
        let env = [
            ("APP__STATE__BACKEND", "redis"),
            ("APP__STATE__URL", state_url),
            ("APP__STATE__KEY_PREFIX", PREFIX),
            ("APP__STORAGE__BACKEND", "s3"),
            ("APP__STORAGE__ENDPOINT", s3.endpoint.as_str()),
            ("APP__STORAGE__REGION", "us-east-1"),
            ("APP__STORAGE__BUCKET", S3_BUCKET),
            ("APP__STORAGE__ACCESS_KEY", S3_ACCESS_KEY),
            ("APP__STORAGE__SECRET_KEY", S3_SECRET_KEY),
            ("APP__SERVER__LOCK_TTL_MILLIS", lock_ttl.as_str()),
            ("APP__SERVER__LOCK_WAIT_SECONDS", "60"),
            ("APP__LIMITS__ADMISSION__MAX_PER_USER", "16"),
            ("APP__LIMITS__ADMISSION__MAX_PER_WORKSPACE", "32"),
        ];
        let processes = vec![
            ServiceProcess::start_with(&env).await,
            ServiceProcess::start_with(&env).await,
        ];
        let mut channels = Vec::new();
        for process in &processes {
            channels.push(process.channel().await);
        }
        let (store, _) = storage_backend(
            &StorageSettings::S3 {
                endpoint: s3.endpoint.clone(),
                region: "us-east-1".into(),
                bucket: S3_BUCKET.into(),
                access_key: S3_ACCESS_KEY.into(),
                secret_key: S3_SECRET_KEY.into(),
                public_endpoint: String::new(),
                payload: Default::default(),
            },
            "",
        )
        .await
        .unwrap();
        let (quota, catalog) = state_backend(&StateSettings::Redis {
            url: state_url.into(),
            key_prefix: PREFIX.into(),
        })
        .unwrap();
        Replicas {
            processes,
            channels,
            store,
            quota,
            catalog,
            _s3: s3,
        }
    }

    fn token(&self, sub: &str, ws: &str, roles: &[&str]) -> String {
        self.processes[0].token(sub, ws, roles)
    }

    /// Registers a workspace (0: the default quota) through the first replica.
    async fn register_workspace(&self, workspace: &str, quota: u64) {
        v1::target_registry_client::TargetRegistryClient::new(self.channels[0].clone())
            .register_workspace(authed(
                &self.token("registry", "*", &["service"]),
                v1::RegisterWorkspaceRequest {
                    workspace_id: workspace.into(),
                    quota_bytes: quota,
                    refuse_duplicates: None,
                },
            ))
            .await
            .unwrap();
    }

    /// Registers a target through the second replica.
    async fn register_target(&self, target: v1::Target, workspace: &str, owner: &str) {
        v1::target_registry_client::TargetRegistryClient::new(self.channels[1].clone())
            .register_target(authed(
                &self.token("registry", "*", &["service"]),
                v1::RegisterTargetRequest {
                    target: Some(target),
                    workspace_id: workspace.into(),
                    owner: owner.into(),
                },
            ))
            .await
            .unwrap();
    }

    /// Starts `count` uploads, alternating between the replicas; `make(n)` gives the n-th
    /// upload's token, target, content type and bytes.
    fn burst(
        &self,
        count: usize,
        make: impl Fn(usize) -> (String, v1::Target, &'static str, Vec<u8>),
    ) -> Vec<tokio::task::JoinHandle<Result<v1::UploadImageResponse, tonic::Status>>> {
        (0..count)
            .map(|n| {
                let (token, target, content_type, bytes) = make(n);
                upload(
                    self.channels[n % 2].clone(),
                    token,
                    target,
                    content_type,
                    bytes,
                )
            })
            .collect()
    }

    /// Every object of `workspace` is named by its target's record, and the workspace's usage
    /// is exactly what those objects hold.
    async fn assert_exact(&self, workspace: &str) -> u64 {
        let mut stored = 0;
        for object in self.store.list(&format!("ws/{workspace}/")).await.unwrap() {
            let (ws, target) = ingest_service::janitor::target_of_object(&object.key).unwrap();
            let record = self.catalog.image(&ws, &target).await.unwrap();
            assert_eq!(
                record.map(|record| record.key),
                Some(object.key.clone()),
                "an object no record names (an orphan) was left"
            );
            stored += object.size;
        }
        assert_eq!(self.quota.used(workspace).await.unwrap(), stored);
        stored
    }
}

fn upload(
    channel: Channel,
    token: String,
    target: v1::Target,
    content_type: &'static str,
    bytes: Vec<u8>,
) -> tokio::task::JoinHandle<Result<v1::UploadImageResponse, tonic::Status>> {
    tokio::spawn(async move {
        let messages = messages(header(target, content_type, &bytes), &bytes, 64 * 1024);
        v1::image_ingest_client::ImageIngestClient::new(channel)
            .upload_image(authed(&token, tokio_stream::iter(messages)))
            .await
            .map(tonic::Response::into_inner)
    })
}

/// Appends, entry uploads, replaces and quota-limited uploads, split across two replicas.
async fn two_replicas_share_every_kind_of_write(state_url: &str) {
    let replicas = Replicas::start(state_url, 5).await;
    replicas.register_workspace("w1", 0).await;
    let report = target(TargetKind::Report, "R1");
    let entry = target(TargetKind::ExpenseEntry, "E1");
    let replaced = expense("w1", "X1");
    replicas.register_target(report.clone(), "w1", "u1").await;
    replicas.register_target(entry.clone(), "w1", "u1").await;
    replicas.register_target(replaced.clone(), "w1", "o1").await;
    let user = replicas.token("u1", "w1", &[]);
    let owner = replicas.token("o1", "w1", &["owner"]);

    let appends = replicas.burst(12, |n| {
        let (content_type, bytes) = match n % 3 {
            0 => ("image/jpeg", jpeg(40 + n as u32, 30)),
            1 => ("image/png", png(30, 40 + n as u32)),
            _ => ("application/pdf", pdf(2)),
        };
        (user.clone(), report.clone(), content_type, bytes)
    });
    let entries = replicas.burst(8, |n| {
        let bytes = png(20 + n as u32, 20);
        (user.clone(), entry.clone(), "image/png", bytes)
    });
    let replaces = replicas.burst(8, |n| {
        let bytes = png(20, 20 + n as u32);
        (owner.clone(), replaced.clone(), "image/png", bytes)
    });

    let mut expected_pages = 0;
    for (n, task) in appends.into_iter().enumerate() {
        task.await.unwrap().expect("every append succeeds");
        expected_pages += if n % 3 == 2 { 2 } else { 1 };
    }
    let mut attached = 0;
    for task in entries {
        match task.await.unwrap() {
            Ok(_) => attached += 1,
            Err(status) => assert_eq!(reason(&status), "ALREADY_ATTACHED"),
        }
    }
    assert_eq!(attached, 1, "an entry takes exactly one image");
    for task in replaces {
        task.await.unwrap().expect("every replace succeeds");
    }

    let record = replicas
        .catalog
        .image("w1", "REPORT:R1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.page_count as usize, expected_pages);
    let report_bytes = replicas.store.get(&record.key).await.unwrap().unwrap();
    assert_eq!(pdf_pages(&report_bytes), expected_pages, "no append lost");
    let objects = replicas.store.list("ws/w1/").await.unwrap();
    assert_eq!(
        objects.len(),
        3,
        "one report, one entry image, one expense image: {objects:?}"
    );
    replicas.assert_exact("w1").await;

    // Quota: room for four receipts, ten uploaded across both replicas.
    let file = jpeg(200, 200);
    let size = file.len() as u64;
    replicas.register_workspace("w2", size * 4 + size / 2).await;
    let receipt = target(TargetKind::Receipt, "");
    let limited = replicas.burst(10, |n| {
        let token = replicas.token(&format!("u{}", n % 3), "w2", &[]);
        (token, receipt.clone(), "image/jpeg", file.clone())
    });
    let mut stored = 0;
    for task in limited {
        match task.await.unwrap() {
            Ok(_) => stored += 1,
            Err(status) => assert_eq!(reason(&status), "QUOTA_EXCEEDED"),
        }
    }
    assert_eq!(stored, 4);
    assert_eq!(replicas.assert_exact("w2").await, size * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_redis_lose_nothing_and_keep_usage_exact() {
    let redis = RedisServer::start();
    two_replicas_share_every_kind_of_write(&redis.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_a_redis_cluster_lose_nothing_and_keep_usage_exact() {
    let cluster = RedisCluster::start();
    two_replicas_share_every_kind_of_write(&cluster.url()).await;
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_paused_past_its_lock_loses_no_append_and_overwrites_none() {
    let redis = RedisServer::start();
    let replicas = Replicas::start(&redis.url(), 1000).await;
    replicas.register_workspace("w1", 0).await;
    let report = target(TargetKind::Report, "R1");
    replicas.register_target(report.clone(), "w1", "u1").await;
    let token = replicas.token("u1", "w1", &[]);
    upload(
        replicas.channels[1].clone(),
        token.clone(),
        report.clone(),
        "application/pdf",
        pdf(1),
    )
    .await
    .unwrap()
    .unwrap();

    // The first replica takes the report's lock for a slow append (a large PNG to convert),
    // and is paused while it holds it.
    let slow = upload(
        replicas.channels[0].clone(),
        token.clone(),
        report.clone(),
        "image/png",
        png(1600, 1600),
    );
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let lock = format!("{PREFIX}lock:target:REPORT:R1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held: bool = ::redis::cmd("EXISTS")
            .arg(&lock)
            .query_async(&mut raw)
            .await
            .unwrap();
        if held {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lock was never taken"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let paused = replicas.processes[0].pid();
    signal(paused, "-STOP");

    // Its lock lapses; the other replica appends three times meanwhile.
    for n in 0..3u32 {
        upload(
            replicas.channels[1].clone(),
            token.clone(),
            report.clone(),
            "image/jpeg",
            jpeg(50 + n, 40),
        )
        .await
        .unwrap()
        .expect("appends go ahead once the paused holder's lock lapsed");
    }
    signal(paused, "-CONT");
    slow.await
        .unwrap()
        .expect("the paused append finds the report changed and appends to the new one");

    let record = replicas
        .catalog
        .image("w1", "REPORT:R1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.page_count, 5);
    let bytes = replicas.store.get(&record.key).await.unwrap().unwrap();
    assert_eq!(pdf_pages(&bytes), 5, "no append lost, none overwritten");
    replicas.assert_exact("w1").await;
}
