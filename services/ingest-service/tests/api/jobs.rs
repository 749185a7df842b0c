//! Receipts processed asynchronously (`UploadImage` with `process_async`, `GetProcessingStatus`)
//! over real gRPC: accepted at once, processed by the job queue's workers with the same checks
//! as a synchronous upload and the v4 rules (an image over 2,200 px reduced, TIFF as PDF), a
//! refusal ending FAILED with its reason and its quota released, retries while storage is down.
//! Crash tests SIGKILL a service process while its worker holds jobs (before processing,
//! mid-processing, after the commit but before the status update): every accepted receipt ends
//! PROCESSED exactly once, on the embedded default (restarted), on Redis with a second replica
//! taking over, and on a Redis Cluster; a Redis restarted mid-queue loses nothing.

use crate::helpers::{
    Stack, authed, header, messages, reason, spawn_app_with, target, test_settings,
};
use crate::process::ServiceProcess;
use imaging_e2e::fixtures::{self, TIFF_LZW, jpeg, noise_png, png};
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::{self, ProcessingStatus, TargetKind};
use ingest_service::configuration::{StateSettings, StorageSettings};
use ingest_service::storage::ObjectStore;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;
use tonic::transport::Channel;

type Client = ImageIngestClient<Channel>;

/// Uploads `bytes` as a new receipt processed asynchronously.
async fn accept(
    client: &Client,
    token: &str,
    content_type: &str,
    bytes: &[u8],
) -> Result<v1::UploadImageResponse, Status> {
    let mut head = header(target(TargetKind::Receipt, ""), content_type, bytes);
    head.process_async = true;
    client
        .clone()
        .max_decoding_message_size(16 << 20)
        .upload_image(authed(
            token,
            tokio_stream::iter(messages(head, bytes, 64 * 1024)),
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn status(
    client: &Client,
    token: &str,
    id: &str,
) -> Result<v1::ProcessingStatusInfo, Status> {
    client
        .clone()
        .get_processing_status(authed(
            token,
            v1::GetProcessingStatusRequest { id: id.into() },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// Polls the status of `id` until `done` says so (at most a minute).
async fn until(
    client: &Client,
    token: &str,
    id: &str,
    done: impl Fn(&v1::ProcessingStatusInfo) -> bool,
) -> v1::ProcessingStatusInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(info) = status(client, token, id).await
            && done(&info)
        {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} never got there: {:?}",
            status(client, token, id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is(status: ProcessingStatus) -> impl Fn(&v1::ProcessingStatusInfo) -> bool {
    move |info| info.status == i32::from(status)
}

fn is_final(info: &v1::ProcessingStatusInfo) -> bool {
    info.status == i32::from(ProcessingStatus::Processed)
        || info.status == i32::from(ProcessingStatus::Failed)
}

async fn image(client: &Client, token: &str, id: &str) -> Result<v1::ImageInfo, Status> {
    client
        .clone()
        .get_image(authed(
            token,
            v1::GetImageRequest {
                target: Some(target(TargetKind::Receipt, id)),
                owner: String::new(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The workspace's used bytes, read with the platform's service token.
async fn used(service: &ServiceProcess, ws: &str) -> u64 {
    ImageIngestClient::new(service.channel().await)
        .get_usage(authed(
            &service.token("registry", "*", &["service"]),
            v1::GetUsageRequest {
                workspace_id: ws.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .used_bytes
}

async fn receipts_are_accepted_at_once_and_processed_with_the_v4_rules(stack: Stack) {
    let app = spawn_app_with(stack, |_| {}).await;
    let client = app.ingest.clone();
    let token = app.token("u1", "w1", &[], &[]);
    // A 3000x2000 JPEG (over 2,200 px), a small PNG, a two-page TIFF.
    let big = jpeg(3000, 2000);
    let small = png(300, 200);
    let cases: [(&str, &[u8]); 3] = [
        ("image/jpeg", &big),
        ("image/png", &small),
        ("image/tiff", TIFF_LZW),
    ];
    let mut ids = Vec::new();
    for (content_type, bytes) in cases {
        let accepted = accept(&client, &token, content_type, bytes).await.unwrap();
        assert_eq!(
            accepted.processing_status,
            i32::from(ProcessingStatus::Accepted)
        );
        assert_eq!(accepted.image_id.len(), 32);
        ids.push(accepted.image_id);
    }
    let mut stored = 0;
    for id in &ids {
        let done = until(&client, &token, id, is_final).await;
        assert_eq!(
            done.status,
            i32::from(ProcessingStatus::Processed),
            "{done:?}"
        );
        assert_eq!(done.owner, "u1");
        assert!(done.attempts >= 1);
        let levels: Vec<&str> = done.logs.iter().map(|l| l.level.as_str()).collect();
        assert_eq!(levels.first(), Some(&"INFO"));
        assert!(done.logs.last().unwrap().message.starts_with("Processed"));
        stored += image(&client, &token, id).await.unwrap().size_bytes;
    }
    // The JPEG was reduced to 2,200 px on its long side; Pillow reads what is served.
    let big_image = image(&client, &token, &ids[0]).await.unwrap();
    assert_eq!((big_image.width, big_image.height), (2200, 1467));
    let (code, served) = app.fetch(&big_image.url).await;
    assert_eq!(code, 200);
    assert_eq!(fixtures::pillow_reads(&served), "JPEG 2200 1467");
    // The small PNG is stored as sent, byte for byte.
    let small_image = image(&client, &token, &ids[1]).await.unwrap();
    assert_eq!(app.fetch(&small_image.url).await.1, small);
    // The TIFF became a PDF of its two pages.
    let pdf = image(&client, &token, &ids[2]).await.unwrap();
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(fixtures::pdfinfo_pages(&app.fetch(&pdf.url).await.1), 2);
    // The quota is what is stored; nothing of the received bytes is left.
    assert_eq!(app.used("w1").await, stored);
    let objects = app.objects().await;
    assert!(
        objects.iter().all(|o| !o.key.starts_with("jobs/")),
        "{objects:?}"
    );
    assert_eq!(
        objects.iter().filter(|o| o.key.starts_with("ws/")).count(),
        3
    );
}

#[tokio::test]
async fn receipts_are_accepted_at_once_and_processed_with_the_v4_rules_embedded() {
    receipts_are_accepted_at_once_and_processed_with_the_v4_rules(Stack::Embedded).await;
}

#[tokio::test]
async fn receipts_are_accepted_at_once_and_processed_with_the_v4_rules_on_s3_and_redis() {
    receipts_are_accepted_at_once_and_processed_with_the_v4_rules(Stack::Real).await;
}

#[tokio::test]
async fn a_refused_receipt_ends_failed_with_its_reason_and_its_quota_released() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let client = app.ingest.clone();
    let token = app.token("u1", "w1", &[], &[]);
    // Sniffed as a JPEG, but it does not decode: accepted, then refused by the worker.
    let mut corrupt = jpeg(64, 64);
    corrupt.truncate(200);
    corrupt.extend(std::iter::repeat_n(0x55, 4000));
    let accepted = accept(&client, &token, "image/jpeg", &corrupt)
        .await
        .unwrap();
    let done = until(&client, &token, &accepted.image_id, is_final).await;
    assert_eq!(done.status, i32::from(ProcessingStatus::Failed));
    assert_eq!(
        done.failure_reason,
        i32::from(v1::ErrorReason::CorruptImage)
    );
    let last = done.logs.last().unwrap();
    assert_eq!(last.level, "ERROR");
    assert_eq!(last.reason, i32::from(v1::ErrorReason::CorruptImage));
    assert!(last.message.contains("corrupt"), "{last:?}");
    assert_eq!(app.used("w1").await, 0);
    assert!(app.objects().await.is_empty());
    let missing = image(&client, &token, &accepted.image_id)
        .await
        .unwrap_err();
    assert_eq!(reason(&missing), "IMAGE_NOT_FOUND");
    // What the dialect refuses on arrival is refused at once: a type it does not take, bytes
    // that are not their declared type, a file over its size limit.
    let refused = accept(&client, &token, "image/webp", &png(10, 10))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "UNSUPPORTED_MEDIA_TYPE");
    let refused = accept(&client, &token, "image/png", &jpeg(10, 10))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "CONTENT_TYPE_MISMATCH");
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.async_receipts.max_bytes = 5000;
    })
    .await;
    let token = app.token("u1", "w1", &[], &[]);
    let refused = accept(&app.ingest, &token, "image/png", &noise_png(100))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "FILE_TOO_LARGE");
    assert!(app.objects().await.is_empty());
}

#[tokio::test]
async fn the_asynchronous_limit_is_the_dialects_own() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let token = app.token("u1", "w1", &[], &[]);
    // Over the synchronous 10 MB, under the asynchronous 25 MB.
    let large = noise_png(2000);
    assert!(large.len() > 10_485_760, "{}", large.len());
    let synchronous = app
        .upload(&token, target(TargetKind::Receipt, ""), "image/png", &large)
        .await
        .unwrap_err();
    assert_eq!(reason(&synchronous), "FILE_TOO_LARGE");
    let accepted = accept(&app.ingest, &token, "image/png", &large)
        .await
        .unwrap();
    let done = until(&app.ingest, &token, &accepted.image_id, is_final).await;
    assert_eq!(
        done.status,
        i32::from(ProcessingStatus::Processed),
        "{done:?}"
    );
    let stored = image(&app.ingest, &token, &accepted.image_id)
        .await
        .unwrap();
    assert_eq!(app.fetch(&stored.url).await.1, large);
}

#[tokio::test]
async fn a_status_is_its_owners_and_their_workspace_admins() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let owner = app.token("u1", "w1", &[], &[]);
    let accepted = accept(&app.ingest, &owner, "image/png", &png(20, 20))
        .await
        .unwrap();
    let id = accepted.image_id;
    let other = app.token("u2", "w1", &[], &[]);
    let denied = status(&app.ingest, &other, &id).await.unwrap_err();
    assert_eq!(reason(&denied), "PERMISSION_DENIED");
    let elsewhere = app.token("u1", "w2", &["company_admin"], &[]);
    let hidden = status(&app.ingest, &elsewhere, &id).await.unwrap_err();
    assert_eq!(reason(&hidden), "IMAGE_NOT_FOUND");
    let admin = app.token("boss", "w1", &["company_admin"], &[]);
    assert_eq!(status(&app.ingest, &admin, &id).await.unwrap().id, id);
    let unknown = status(&app.ingest, &owner, &"0".repeat(32))
        .await
        .unwrap_err();
    assert_eq!(reason(&unknown), "IMAGE_NOT_FOUND");
    let malformed = status(&app.ingest, &owner, "../x").await.unwrap_err();
    assert_eq!(reason(&malformed), "INVALID_ID");
    // An admin accepts a receipt for another user of the workspace; a user cannot.
    let mut head = header(target(TargetKind::Receipt, ""), "image/png", &png(8, 8));
    head.process_async = true;
    head.owner = "u3".into();
    let for_u3 = app
        .upload_messages(&admin, messages(head.clone(), &png(8, 8), 1024))
        .await
        .unwrap();
    let done = until(&app.ingest, &admin, &for_u3.image_id, is_final).await;
    assert_eq!(done.owner, "u3");
    let refused = app
        .upload_messages(&owner, messages(head, &png(8, 8), 1024))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "PERMISSION_DENIED");
}

/// A replica that accepts but works no job (its queue is worked by another).
fn accepting_only(backend: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = job_env(backend, None);
    env.push(("APP__LIMITS__JOBS__WORKERS".into(), "0".into()));
    env
}

#[tokio::test]
async fn a_job_that_keeps_failing_gives_up_with_its_reason_and_its_quota_released() {
    let data = tempfile::tempdir().unwrap();
    let (backend, _store, mut servers) = shared_backend(Stack::Real, data.path()).await;
    let front = start(&accepting_only(&backend)).await;
    front.register_workspace(&front.channel().await, "w1").await;
    let client = ImageIngestClient::new(front.channel().await);
    let token = front.token("u1", "w1", &[]);
    let accepted = accept(&client, &token, "image/png", &png(40, 30))
        .await
        .unwrap();
    // Storage goes down before any worker starts, and stays down.
    servers.s3.as_mut().unwrap().stop();
    let mut env = job_env(&backend, None);
    env.push(("APP__LIMITS__JOBS__RETRY_BASE_MILLIS".into(), "200".into()));
    env.push(("APP__LIMITS__JOBS__MAX_ATTEMPTS".into(), "3".into()));
    let _worker = start(&env).await;
    let failed = until(&client, &token, &accepted.image_id, is_final).await;
    assert_eq!(
        failed.status,
        i32::from(ProcessingStatus::Failed),
        "{failed:?}"
    );
    assert_eq!(
        failed.failure_reason,
        i32::from(v1::ErrorReason::StorageUnavailable)
    );
    assert_eq!(failed.attempts, 3);
    // A line per attempt started, a warning per retry (no internals), the error last.
    let levels: Vec<&str> = failed.logs.iter().map(|l| l.level.as_str()).collect();
    assert_eq!(
        levels,
        [
            "INFO", "INFO", "WARNING", "INFO", "WARNING", "INFO", "ERROR"
        ],
        "{failed:?}"
    );
    for line in &failed.logs[1..] {
        assert!(!line.message.contains("127.0.0.1"), "{line:?}");
    }
    assert_eq!(used(&front, "w1").await, 0);
}

#[tokio::test]
async fn a_job_retried_through_a_storage_outage_is_processed_once_storage_is_back() {
    let data = tempfile::tempdir().unwrap();
    let (backend, _store, mut servers) = shared_backend(Stack::Real, data.path()).await;
    let front = start(&accepting_only(&backend)).await;
    front.register_workspace(&front.channel().await, "w1").await;
    let client = ImageIngestClient::new(front.channel().await);
    let token = front.token("u1", "w1", &[]);
    let bytes = png(40, 30);
    let accepted = accept(&client, &token, "image/png", &bytes).await.unwrap();
    servers.s3.as_mut().unwrap().stop();
    let mut env = job_env(&backend, None);
    env.push(("APP__LIMITS__JOBS__RETRY_BASE_MILLIS".into(), "200".into()));
    env.push(("APP__LIMITS__JOBS__RETRY_MAX_SECONDS".into(), "1".into()));
    env.push(("APP__LIMITS__JOBS__MAX_ATTEMPTS".into(), "100".into()));
    let _worker = start(&env).await;
    let waiting = until(&client, &token, &accepted.image_id, |info| {
        info.logs.iter().filter(|l| l.level == "WARNING").count() >= 2
    })
    .await;
    assert_eq!(waiting.status, i32::from(ProcessingStatus::Processing));
    servers.s3.as_mut().unwrap().restart().await;
    let done = until(&client, &token, &accepted.image_id, is_final).await;
    assert_eq!(
        done.status,
        i32::from(ProcessingStatus::Processed),
        "{done:?}"
    );
    assert!(done.attempts >= 3);
    let stored = image(&client, &token, &accepted.image_id).await.unwrap();
    assert_eq!(stored.size_bytes, bytes.len() as u64);
    assert_eq!(used(&front, "w1").await, bytes.len() as u64);
}

/// Where the crash tests stop a worker.
const FAILPOINTS: [&str; 3] = ["taken", "processing", "committed"];

/// The receipts each crash round accepts: a JPEG over 2,200 px, a PNG and a two-page TIFF.
fn round_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("image/jpeg", jpeg(2600, 1200)),
        ("image/png", png(320, 240)),
        ("image/tiff", TIFF_LZW.to_vec()),
    ]
}

/// Environment of a service process that works jobs with a short lease and, if given, stops at
/// `failpoint`.
fn job_env(backend: &[(String, String)], failpoint: Option<&str>) -> Vec<(String, String)> {
    let mut env = backend.to_vec();
    env.push(("APP__LIMITS__JOBS__LEASE_SECONDS".into(), "2".into()));
    env.push(("APP__LIMITS__JOBS__POLL_MILLIS".into(), "100".into()));
    // Enough workers for every job of the rounds (a worker stopped at a failpoint keeps its
    // slot until its process is killed).
    env.push(("APP__LIMITS__JOBS__WORKERS".into(), "16".into()));
    if let Some(failpoint) = failpoint {
        env.push(("IMAGING_JOB_FAILPOINT".into(), failpoint.into()));
    }
    env
}

pub(crate) async fn start(env: &[(String, String)]) -> ServiceProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    ServiceProcess::start_with(&env).await
}

/// Accepts a round of receipts on `service` and waits until its worker reached `failpoint`
/// with every one of them.
async fn accept_round(service: &ServiceProcess, failpoint: &str) -> Vec<String> {
    let client = ImageIngestClient::new(service.channel().await);
    let token = service.token("u1", "w1", &[]);
    let mut ids = Vec::new();
    for (content_type, bytes) in round_files() {
        let accepted = accept(&client, &token, content_type, &bytes).await.unwrap();
        ids.push(accepted.image_id);
    }
    for id in &ids {
        match failpoint {
            // The worker holds the job and has done nothing: it stays ACCEPTED.
            "taken" => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let info = status(&client, &token, id).await.unwrap();
                assert_eq!(info.status, i32::from(ProcessingStatus::Accepted));
            }
            "processing" => {
                until(&client, &token, id, is(ProcessingStatus::Processing)).await;
            }
            // The image is stored, the status still says PROCESSING.
            _ => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while image(&client, &token, id).await.is_err() {
                    assert!(tokio::time::Instant::now() < deadline, "never committed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let info = status(&client, &token, id).await.unwrap();
                assert_eq!(info.status, i32::from(ProcessingStatus::Processing));
            }
        }
    }
    ids
}

/// After the crash rounds: every receipt PROCESSED, one stored object each, the quota equal to
/// the stored bytes, no received bytes left; `objects` lists what storage holds.
async fn assert_each_processed_once(
    service: &ServiceProcess,
    ids: &[String],
    objects: Vec<String>,
) {
    let client = ImageIngestClient::new(service.channel().await);
    let token = service.token("u1", "w1", &[]);
    let mut stored = 0;
    for id in ids {
        let done = until(&client, &token, id, is_final).await;
        assert_eq!(
            done.status,
            i32::from(ProcessingStatus::Processed),
            "{done:?}"
        );
        stored += image(&client, &token, id).await.unwrap().size_bytes;
    }
    assert_eq!(used(service, "w1").await, stored);
    let images: Vec<&String> = objects.iter().filter(|k| k.starts_with("ws/")).collect();
    assert_eq!(images.len(), ids.len(), "{objects:?}");
    for id in ids {
        assert_eq!(images.iter().filter(|k| k.contains(id.as_str())).count(), 1);
    }
    assert!(
        objects.iter().all(|k| !k.starts_with("jobs/")),
        "{objects:?}"
    );
}

/// Every file under `root`, as keys.
fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(key) = path.strip_prefix(root) {
                // A temp file a killed write left behind is no object (the janitor's).
                let temp = entry.file_name().to_string_lossy().starts_with(".tmp-");
                if !temp {
                    out.push(key.to_string_lossy().into_owned());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn a_killed_embedded_service_finishes_every_accepted_receipt_once_after_its_restart() {
    let mut service = start(&job_env(&[], Some("taken"))).await;
    service
        .register_workspace(&service.channel().await, "w1")
        .await;
    let mut ids = Vec::new();
    for failpoint in FAILPOINTS {
        service.set_env("IMAGING_JOB_FAILPOINT", Some(failpoint));
        service.restart().await;
        ids.extend(accept_round(&service, failpoint).await);
        service.kill();
    }
    service.set_env("IMAGING_JOB_FAILPOINT", None);
    service.restart().await;
    let root = service.data.path().join("objects");
    let client = ImageIngestClient::new(service.channel().await);
    let token = service.token("u1", "w1", &[]);
    for id in &ids {
        until(&client, &token, id, is_final).await;
    }
    assert_each_processed_once(&service, &ids, files_under(&root)).await;
}

/// The backend settings of `stack` as a service process's environment, and a store to list.
pub(crate) async fn shared_backend(
    stack: Stack,
    data: &std::path::Path,
) -> (
    Vec<(String, String)>,
    Arc<dyn ObjectStore>,
    crate::helpers::Servers,
) {
    let (settings, servers) = test_settings(stack, data).await;
    let mut env = Vec::new();
    if let StateSettings::Redis { url, key_prefix } = &settings.state {
        env.push(("APP__STATE__BACKEND".into(), "redis".into()));
        env.push(("APP__STATE__URL".into(), url.clone()));
        env.push(("APP__STATE__KEY_PREFIX".into(), key_prefix.clone()));
    }
    if let StorageSettings::S3 {
        endpoint,
        region,
        bucket,
        access_key,
        secret_key,
        ..
    } = &settings.storage
    {
        env.push(("APP__STORAGE__BACKEND".into(), "s3".into()));
        env.push(("APP__STORAGE__ENDPOINT".into(), endpoint.clone()));
        env.push(("APP__STORAGE__REGION".into(), region.clone()));
        env.push(("APP__STORAGE__BUCKET".into(), bucket.clone()));
        env.push(("APP__STORAGE__ACCESS_KEY".into(), access_key.clone()));
        env.push((
            "APP__STORAGE__SECRET_KEY".into(),
            secrecy::ExposeSecret::expose_secret(secret_key).to_owned(),
        ));
    }
    let (store, _) = ingest_service::startup::storage_backend(&settings.storage, "")
        .await
        .unwrap();
    (env, store, servers)
}

/// Replica A stops at each failpoint holding a round of jobs; replica B starts, A is killed,
/// and B takes the jobs over once A's lease lapses.
async fn a_second_replica_takes_over_the_jobs_of_a_killed_one(stack: Stack) {
    let data = tempfile::tempdir().unwrap();
    let (backend, store, _servers) = shared_backend(stack, data.path()).await;
    let mut ids = Vec::new();
    let mut last: Option<ServiceProcess> = None;
    for failpoint in FAILPOINTS {
        // The replica of the previous round is gone: A alone holds this round's jobs.
        drop(last.take());
        let mut a = start(&job_env(&backend, Some(failpoint))).await;
        if ids.is_empty() {
            a.register_workspace(&a.channel().await, "w1").await;
        }
        ids.extend(accept_round(&a, failpoint).await);
        let b = start(&job_env(&backend, None)).await;
        a.kill();
        let client = ImageIngestClient::new(b.channel().await);
        let token = b.token("u1", "w1", &[]);
        for id in &ids {
            let done = until(&client, &token, id, is_final).await;
            assert_eq!(
                done.status,
                i32::from(ProcessingStatus::Processed),
                "{done:?}"
            );
        }
        last = Some(b);
    }
    let keys = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_each_processed_once(last.as_ref().unwrap(), &ids, keys).await;
}

#[tokio::test]
async fn a_second_replica_takes_over_the_jobs_of_a_killed_one_on_redis() {
    a_second_replica_takes_over_the_jobs_of_a_killed_one(Stack::Real).await;
}

#[tokio::test]
async fn a_second_replica_takes_over_the_jobs_of_a_killed_one_on_a_redis_cluster() {
    a_second_replica_takes_over_the_jobs_of_a_killed_one(Stack::Cluster).await;
}

#[tokio::test]
async fn a_redis_restarted_mid_queue_loses_no_accepted_receipt() {
    let data = tempfile::tempdir().unwrap();
    let (backend, store, mut servers) = shared_backend(Stack::Durable, data.path()).await;
    let front = start(&accepting_only(&backend)).await;
    front.register_workspace(&front.channel().await, "w1").await;
    let client = ImageIngestClient::new(front.channel().await);
    let token = front.token("u1", "w1", &[]);
    let mut ids = Vec::new();
    for n in 0..6 {
        let bytes = jpeg(2400 + n * 10, 1000);
        ids.push(
            accept(&client, &token, "image/jpeg", &bytes)
                .await
                .unwrap()
                .image_id,
        );
    }
    // Redis dies with the six jobs queued and comes back from its append-only file.
    servers.redis.as_mut().unwrap().restart();
    let mut env = job_env(&backend, None);
    env.push(("APP__LIMITS__JOBS__WORKERS".into(), "1".into()));
    env.push(("APP__LIMITS__JOBS__RETRY_BASE_MILLIS".into(), "200".into()));
    env.push(("APP__LIMITS__JOBS__MAX_ATTEMPTS".into(), "20".into()));
    let worker = start(&env).await;
    // And once more while the worker is on the queue.
    until(&client, &token, &ids[0], is_final).await;
    servers.redis.as_mut().unwrap().restart();
    for id in &ids {
        let done = until(&client, &token, id, is_final).await;
        assert_eq!(
            done.status,
            i32::from(ProcessingStatus::Processed),
            "{done:?}"
        );
    }
    let keys = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_each_processed_once(&worker, &ids, keys).await;
}

#[tokio::test]
async fn the_janitor_removes_received_bytes_no_queued_job_needs() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let token = app.token("u1", "w1", &[], &[]);
    let accepted = accept(&app.ingest, &token, "image/png", &png(30, 30))
        .await
        .unwrap();
    until(&app.ingest, &token, &accepted.image_id, is_final).await;
    // Bytes stored by an accept whose job was never queued (the process died in between).
    let orphan = png(10, 10);
    let key = format!("jobs/{}/source", "f".repeat(32));
    app.backends
        .store
        .put(
            &key,
            orphan.clone().into(),
            &ingest_service::storage::BodyDigest::of(&orphan),
            "image/png",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let swept = app
        .registry
        .clone()
        .sweep(authed(
            &app.service_token(),
            v1::SweepRequest {
                older_than_seconds: 1,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(swept.leftovers_removed, 1);
    let keys: Vec<String> = app.objects().await.into_iter().map(|o| o.key).collect();
    assert!(!keys.contains(&key), "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.starts_with("ws/")).count(), 1);
    let stored = image(&app.ingest, &token, &accepted.image_id)
        .await
        .unwrap();
    assert_eq!(app.fetch(&stored.url).await.1, png(30, 30));
}

async fn a_status_is_kept_for_its_time_then_forgotten(stack: Stack) {
    let app = spawn_app_with(stack, |settings| {
        settings.limits.jobs.status_ttl_seconds = 2;
    })
    .await;
    let token = app.token("u1", "w1", &[], &[]);
    let accepted = accept(&app.ingest, &token, "image/png", &png(12, 12))
        .await
        .unwrap();
    let done = until(&app.ingest, &token, &accepted.image_id, is_final).await;
    assert_eq!(done.status, i32::from(ProcessingStatus::Processed));
    let received = u64::try_from(done.received_at_ms).unwrap();
    let now = ingest_service::state::now_millis();
    tokio::time::sleep(Duration::from_millis((received + 2300).saturating_sub(now))).await;
    let gone = status(&app.ingest, &token, &accepted.image_id)
        .await
        .unwrap_err();
    assert_eq!(reason(&gone), "IMAGE_NOT_FOUND");
    // The receipt itself stays.
    image(&app.ingest, &token, &accepted.image_id)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_status_is_kept_for_its_time_then_forgotten_embedded() {
    a_status_is_kept_for_its_time_then_forgotten(Stack::Embedded).await;
}

#[tokio::test]
async fn a_status_is_kept_for_its_time_then_forgotten_on_redis() {
    a_status_is_kept_for_its_time_then_forgotten(Stack::Real).await;
}

#[tokio::test]
async fn a_silent_or_trickling_asynchronous_upload_is_cut_off_and_queues_nothing() {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.upload.idle_seconds = 1;
        settings.limits.upload.rate_grace_seconds = 1;
        settings.limits.upload.min_bytes_per_second = 8192;
    })
    .await;
    let token = app.token("mallory", "w1", &[], &[]);
    for trickle in [false, true] {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let mut client = app.ingest.clone();
        let request = authed(
            &token,
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        );
        let call = tokio::spawn(async move { client.upload_image(request).await });
        let mut head = header(target(TargetKind::Receipt, ""), "image/jpeg", &[]);
        head.process_async = true;
        let mut messages = messages(head, &[0xFF, 0xD8, 0xFF], 1).into_iter();
        for message in messages.by_ref() {
            sender.send(message).await.unwrap();
        }
        let sending = tokio::spawn(async move {
            // A byte every 400 ms (under the minimum rate), or nothing at all.
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                if trickle && sender.send(messages_chunk(0xE0)).await.is_err() {
                    break;
                }
            }
            drop(sender);
        });
        let refused = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("cut off, not waited out")
            .unwrap()
            .unwrap_err();
        assert_eq!(reason(&refused), "UPLOAD_TIMEOUT", "trickle: {trickle}");
        sending.abort();
    }
    assert!(app.objects().await.is_empty());
    assert_eq!(app.used("w1").await, 0);
    assert_eq!(app.backends.catalog.queued_jobs().await.unwrap(), 0);
}

fn messages_chunk(byte: u8) -> v1::UploadImageRequest {
    v1::UploadImageRequest {
        part: Some(v1::upload_image_request::Part::Chunk(vec![byte].into())),
    }
}
