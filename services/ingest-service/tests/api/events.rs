//! Events over a real NATS JetStream (`nats-server -js` on a free port, read back by a JetStream
//! pull consumer): every committed change arrives once, with its data, in order per target; a
//! relay killed before or after publishing, a broker stopped and restarted mid-burst and two
//! replicas relaying one Redis lose nothing and store nothing twice in the stream.

use crate::helpers::{Stack, expense, spawn_app_with, target};
use crate::jobs::{shared_backend, start};
use crate::process::ServiceProcess;
use futures::StreamExt;
use imaging_e2e::NatsServer;
use imaging_e2e::fixtures::{jpeg, pdf, png};
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::{self, TargetKind};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const STREAM: &str = "IMAGING_EVENTS";

/// An event as the stream holds it.
#[derive(Debug, Clone)]
struct Received {
    subject: String,
    msg_id: String,
    event: serde_json::Value,
}

impl Received {
    fn kind(&self) -> &str {
        self.event["type"].as_str().unwrap()
    }
    fn subject_of_event(&self) -> &str {
        self.event["subject"].as_str().unwrap()
    }
}

/// Every message in the stream, oldest first, read by a new pull consumer from the start.
async fn read_stream(url: &str) -> Vec<Received> {
    let client = async_nats::connect(url).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let Ok(stream) = jetstream.get_stream(STREAM).await else {
        return Vec::new();
    };
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut all = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .unwrap();
        let before = all.len();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            all.push(Received {
                subject: message.subject.to_string(),
                msg_id,
                event: serde_json::from_slice(&message.payload).unwrap(),
            });
            message.ack().await.unwrap();
        }
        if all.len() == before {
            return all;
        }
    }
}

/// Reads the stream until `done` holds for it (at most a minute).
async fn until_stream(url: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let all = read_stream(url).await;
        if done(&all) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never got there: {} events: {:?}",
            all.len(),
            all.iter().map(Received::kind).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event once: distinct event IDs, each the message's `Nats-Msg-Id`.
fn assert_each_once(all: &[Received]) {
    let ids: HashSet<&str> = all.iter().map(|r| r.msg_id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "an event is in the stream twice");
    for received in all {
        assert_eq!(received.event["id"], received.msg_id.as_str());
        assert_eq!(received.event["specversion"], "1.0");
    }
}

/// The event types of each subject (target), in stream order.
fn per_subject(all: &[Received]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for received in all {
        let kind = match received.kind() {
            "imaging.receipt.status" => {
                format!(
                    "status:{}",
                    received.event["data"]["status"].as_str().unwrap()
                )
            }
            other => other.to_owned(),
        };
        map.entry(received.subject_of_event().to_owned())
            .or_default()
            .push(kind);
    }
    map
}

#[tokio::test]
async fn every_committed_change_is_published_once_in_order_with_its_data() {
    let nats = NatsServer::start();
    let url = nats.url();
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.events.nats_url = url.clone();
        settings.events.poll_millis = 50;
        settings.limits.jobs.poll_millis = 50;
    })
    .await;
    let token = app.token("u1", "w1", &[], &[]);
    // A loose receipt: stored, then deleted.
    let receipt = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/png",
            &png(40, 30),
        )
        .await
        .unwrap();
    let stored = app
        .get_image(&token, target(TargetKind::Receipt, &receipt.image_id))
        .await
        .unwrap();
    app.delete_image(&token, target(TargetKind::Receipt, &receipt.image_id))
        .await
        .unwrap();
    // A report: stored, then appended to.
    app.register_target(target(TargetKind::Report, "R1"), "w1", "u1")
        .await;
    app.upload(
        &token,
        target(TargetKind::Report, "R1"),
        "application/pdf",
        &pdf(1),
    )
    .await
    .unwrap();
    app.upload(
        &token,
        target(TargetKind::Report, "R1"),
        "image/jpeg",
        &jpeg(30, 20),
    )
    .await
    .unwrap();
    // A workspace expense: stored, then replaced.
    app.register_target(expense("w1", "X1"), "w1", "u1").await;
    let staff = app.token("u2", "w1", &["staff"], &["financial"]);
    for side in [50, 60] {
        app.upload(&staff, expense("w1", "X1"), "image/png", &png(side, side))
            .await
            .unwrap();
    }
    // The same bytes twice: the second's event names the first as a duplicate.
    let copies: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let copy = app
                .upload(
                    &token,
                    target(TargetKind::Receipt, ""),
                    "image/png",
                    &png(41, 30),
                )
                .await
                .unwrap();
            ids.push(copy.image_id);
        }
        ids
    };
    // A receipt processed asynchronously: its status changes, and its image stored.
    let mut head =
        imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/png", &png(20, 20));
    head.process_async = true;
    let accepted = app
        .upload_messages(
            &token,
            imaging_e2e::service::messages(head, &png(20, 20), 1 << 16),
        )
        .await
        .unwrap();

    let all = until_stream(&url, |all| {
        all.iter()
            .filter(|r| r.kind() == "imaging.receipt.status")
            .any(|r| r.event["data"]["status"] == "PROCESSED")
    })
    .await;
    assert_each_once(&all);
    let by_subject = per_subject(&all);
    let receipt_subject = format!("RECEIPT:{}", receipt.image_id);
    assert_eq!(
        by_subject[&receipt_subject],
        ["imaging.image.stored", "imaging.image.deleted"]
    );
    assert_eq!(
        by_subject["REPORT:R1"],
        ["imaging.image.stored", "imaging.image.appended"]
    );
    assert_eq!(
        by_subject["WORKSPACE_EXPENSE:X1"],
        ["imaging.image.stored", "imaging.image.replaced"]
    );
    // Its status events in order (they share one outbox), and its image stored once.
    let of_async = &by_subject[&format!("RECEIPT:{}", accepted.image_id)];
    let statuses: Vec<&String> = of_async
        .iter()
        .filter(|k| k.starts_with("status:"))
        .collect();
    assert_eq!(
        statuses,
        ["status:ACCEPTED", "status:PROCESSING", "status:PROCESSED"]
    );
    assert_eq!(
        of_async
            .iter()
            .filter(|k| *k == "imaging.image.stored")
            .count(),
        1,
        "{of_async:?}"
    );
    let copy_event = all
        .iter()
        .find(|r| r.subject_of_event() == format!("RECEIPT:{}", copies[1]))
        .unwrap();
    assert_eq!(
        copy_event.event["data"]["duplicates"],
        serde_json::json!([{"image_id": copies[0], "match": "exact", "distance": 0}])
    );
    // The data says what was stored, the subject where it goes.
    let first = all
        .iter()
        .find(|r| r.subject_of_event() == receipt_subject)
        .unwrap();
    assert_eq!(first.subject, "imaging.events.w1.image.stored");
    assert_eq!(first.event["source"], "/imaging/workspaces/w1");
    let data = &first.event["data"];
    assert_eq!(data["workspace"], "w1");
    assert_eq!(data["owner"], "u1");
    assert_eq!(data["image_id"], receipt.image_id.as_str());
    assert_eq!(data["target"]["kind"], "RECEIPT");
    assert_eq!(data["sha256"], hex_of(&stored.sha256));
    assert_eq!(data["size"], stored.size_bytes);
    assert_eq!(data["content_type"], "image/png");
    assert_eq!(data["pages"], 1);
    assert_eq!(data["duplicates"], serde_json::json!([]));
    // Nothing is left waiting.
    assert_eq!(app.backends.catalog.outbox_len().await.unwrap(), 0);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A service process's environment that relays to `nats` quickly and, if given, stops its
/// relay at `failpoint`.
fn relay_env(
    backend: &[(String, String)],
    nats: &str,
    failpoint: Option<&str>,
) -> Vec<(String, String)> {
    let mut env = backend.to_vec();
    env.push(("APP__EVENTS__NATS_URL".into(), nats.into()));
    env.push(("APP__EVENTS__POLL_MILLIS".into(), "50".into()));
    env.push(("APP__EVENTS__LEASE_SECONDS".into(), "2".into()));
    env.push(("APP__EVENTS__PUBLISH_TIMEOUT_MILLIS".into(), "1000".into()));
    if let Some(failpoint) = failpoint {
        env.push(("IMAGING_RELAY_FAILPOINT".into(), failpoint.into()));
    }
    env
}

/// Uploads `count` receipts to `service` as u1 of w1; their image IDs.
async fn upload_receipts(service: &ServiceProcess, count: u32, base: u32) -> Vec<String> {
    let client = ImageIngestClient::new(service.channel().await);
    let token = service.token("u1", "w1", &[]);
    let mut ids = Vec::new();
    for n in 0..count {
        ids.push(upload_receipt(&client, &token, &png(10 + base + n, 10)).await);
    }
    ids
}

/// Uploads `bytes` (a PNG) as a new receipt; its image ID.
async fn upload_receipt(
    client: &ImageIngestClient<tonic::transport::Channel>,
    token: &str,
    bytes: &[u8],
) -> String {
    let head = imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/png", bytes);
    client
        .clone()
        .upload_image(imaging_e2e::service::authed(
            token,
            tokio_stream::iter(imaging_e2e::service::messages(head, bytes, 1 << 16)),
        ))
        .await
        .unwrap()
        .into_inner()
        .image_id
}

/// The image IDs of the `stored` events in the stream.
fn stored_ids(all: &[Received]) -> Vec<String> {
    all.iter()
        .filter(|r| r.kind() == "imaging.image.stored")
        .map(|r| r.event["data"]["image_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_relay_killed_before_or_after_publishing_delivers_every_event_once_after_its_restart() {
    let nats = NatsServer::start();
    let url = nats.url();
    // Killed after reading, before publishing anything.
    let mut service = start(&relay_env(&[], &url, Some("read"))).await;
    service
        .register_workspace(&service.channel().await, "w1")
        .await;
    let mut ids = upload_receipts(&service, 4, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(read_stream(&url).await.is_empty(), "nothing published yet");
    service.kill();
    // Killed after publishing the first event of its batch, before removing it.
    service.set_env("IMAGING_RELAY_FAILPOINT", Some("published"));
    service.restart().await;
    let published = until_stream(&url, |all| !all.is_empty()).await;
    assert_eq!(published.len(), 1);
    ids.extend(upload_receipts(&service, 3, 10).await);
    service.kill();
    // Restarted without a failpoint: everything arrives, nothing twice.
    service.set_env("IMAGING_RELAY_FAILPOINT", None);
    service.restart().await;
    let all = until_stream(&url, |all| all.len() >= ids.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = if read_stream(&url).await.len() > all.len() {
        read_stream(&url).await
    } else {
        all
    };
    assert_each_once(&all);
    assert_eq!(stored_ids(&all), ids, "each once, in commit order");
}

#[tokio::test]
async fn two_replicas_relay_one_redis_through_a_broker_restart_losing_nothing() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let (backend, _store, _servers) = shared_backend(Stack::Real, data.path()).await;
    let a = start(&relay_env(&backend, &url, None)).await;
    let b = start(&relay_env(&backend, &url, None)).await;
    a.register_workspace(&a.channel().await, "w1").await;
    a.register_workspace(&a.channel().await, "w2").await;
    // A burst on both replicas, into two workspaces, with the broker killed and restarted in
    // the middle of it.
    let outage = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        nats.stop();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        nats.restart();
    };
    let (on_a, on_b, ()) = tokio::join!(
        burst(a.channel().await, a.token("u1", "w1", &[]), 0),
        burst(b.channel().await, b.token("u1", "w2", &[]), 100),
        outage
    );
    let expected: HashSet<String> = on_a.iter().chain(&on_b).cloned().collect();
    let all = until_stream(&url, |all| {
        stored_ids(all).into_iter().collect::<HashSet<_>>() == expected
    })
    .await;
    // Settled: nothing more arrives, nothing is left waiting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = {
        let again = read_stream(&url).await;
        assert_eq!(again.len(), all.len(), "no event arrived twice");
        again
    };
    assert_each_once(&all);
    assert_eq!(all.len(), expected.len());
    // In order per workspace's outbox: each workspace's receipts in the order they committed.
    for (ws, ids) in [("w1", &on_a), ("w2", &on_b)] {
        let in_stream: Vec<String> = all
            .iter()
            .filter(|r| r.event["data"]["workspace"] == ws)
            .map(|r| r.event["data"]["image_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(&in_stream, ids, "{ws}");
        assert!(
            all.iter()
                .filter(|r| r.event["data"]["workspace"] == ws)
                .all(|r| r.subject == format!("imaging.events.{ws}.image.stored"))
        );
    }
}

/// Uploads 30 receipts, one every 20 ms; their image IDs in commit order.
async fn burst(channel: tonic::transport::Channel, token: String, base: u32) -> Vec<String> {
    let client = ImageIngestClient::new(channel);
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(upload_receipt(&client, &token, &png(10 + base + n, 12)).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids
}

/// A webhook endpoint in Python that verifies every request with the Standard Webhooks
/// reference library, answers 500 to the first `fail_first` requests, then 200.
struct Receiver {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
    url: String,
}

impl Receiver {
    fn start(secret: &str, fail_first: u32) -> Self {
        let port = imaging_e2e::free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/clients/webhook_receiver.py"
        );
        let child = std::process::Command::new("python3")
            .args([
                script,
                &port.to_string(),
                secret,
                &fail_first.to_string(),
                &log.path().to_string_lossy(),
            ])
            .spawn()
            .expect("python3 with standardwebhooks (the README's test command installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver {
            child,
            log,
            url: format!("http://127.0.0.1:{port}/hooks"),
        }
    }

    /// Every request it got: (webhook-id, signature valid, status answered, body).
    fn requests(&self) -> Vec<(String, bool, u16, serde_json::Value)> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["valid"].as_bool().unwrap(),
                    v["status"].as_u64().unwrap() as u16,
                    serde_json::from_str(v["body"].as_str().unwrap()).unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An endpoint that accepts connections and never answers; counts the connections.
async fn silent_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/never", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

async fn register_webhook(
    app: &crate::helpers::TestApp,
    token: &str,
    ws: &str,
    url: &str,
    secret: &str,
) -> Result<v1::Webhook, tonic::Status> {
    app.registry
        .clone()
        .register_webhook(imaging_e2e::service::authed(
            token,
            v1::RegisterWebhookRequest {
                workspace_id: ws.into(),
                url: url.into(),
                secret: secret.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn deliveries(app: &crate::helpers::TestApp, hook: &str) -> Vec<v1::WebhookDelivery> {
    app.registry
        .clone()
        .list_deliveries(imaging_e2e::service::authed(
            &app.service_token(),
            v1::ListDeliveriesRequest {
                workspace_id: "w1".into(),
                webhook_id: hook.into(),
                limit: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Webhooks: signed deliveries verified by the reference library, in order, retried through
/// an endpoint's 500s; a silent endpoint neither holds uploads nor the other webhook, and its
/// deliveries end FAILED once the retry period is over.
async fn webhooks_are_signed_retried_and_isolated(stack: Stack) {
    let app = spawn_app_with(stack, |settings| {
        settings.events.poll_millis = 50;
        settings.events.webhook_timeout_millis = 1000;
        settings.events.webhook_retry_base_millis = 200;
        settings.events.webhook_retry_max_seconds = 1;
        settings.events.webhook_retry_seconds = 4;
    })
    .await;
    let service = app.service_token();
    let (silent_url, silent_connections) = silent_endpoint().await;
    let silent = register_webhook(&app, &service, "w1", &silent_url, "")
        .await
        .unwrap();
    assert!(silent.secret.starts_with("whsec_"), "a secret is made");
    let secret = format!(
        "whsec_{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
    );
    let receiver = Receiver::start(&secret, 3);
    let hook = register_webhook(&app, &service, "w1", &receiver.url, &secret)
        .await
        .unwrap();
    assert_eq!(hook.secret, secret);

    // Uploads go on while the silent endpoint holds a request.
    let token = app.token("u1", "w1", &[], &[]);
    let mut ids = Vec::new();
    for n in 0..5 {
        let response = app
            .upload(
                &token,
                target(TargetKind::Receipt, ""),
                "image/png",
                &png(20 + n, 20),
            )
            .await
            .unwrap();
        ids.push(response.image_id);
    }
    // The healthy endpoint gets every event once it answers 200, in commit order, each
    // signature verified by the reference library.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let requests = receiver.requests();
        let accepted: Vec<_> = requests.iter().filter(|r| r.2 == 200).cloned().collect();
        if accepted.len() >= ids.len() {
            assert!(requests.iter().all(|r| r.1), "every signature verifies");
            break accepted;
        }
        assert!(tokio::time::Instant::now() < deadline, "{requests:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delivered: Vec<String> = accepted
        .iter()
        .map(|r| r.3["data"]["image_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, ids, "in order, each once");
    for (id, _, _, body) in &accepted {
        assert_eq!(body["id"], id.as_str(), "webhook-id is the event ID");
        assert_eq!(body["type"], "imaging.image.stored");
    }
    assert!(silent_connections.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // The first event took four attempts (three 500s); every delivery shows as delivered.
    let seen = deliveries(&app, &hook.id).await;
    assert_eq!(seen.len(), ids.len());
    assert!(
        seen.iter()
            .all(|d| d.status == i32::from(v1::DeliveryStatus::DeliveryDelivered))
    );
    let first = seen.iter().find(|d| d.event_id == accepted[0].0).unwrap();
    assert_eq!(first.attempts, 4);
    assert_eq!(first.last_status_code, 200);
    // The silent endpoint's first delivery is given up after the retry period and kept as
    // failed, with why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = deliveries(&app, &silent.id).await;
        if let Some(failed) = seen
            .iter()
            .find(|d| d.status == i32::from(v1::DeliveryStatus::DeliveryFailed))
        {
            assert_eq!(failed.last_error, "no answer in time");
            assert!(failed.attempts >= 2, "{failed:?}");
            assert!(failed.finished_at_ms > 0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_isolated_embedded() {
    webhooks_are_signed_retried_and_isolated(Stack::Embedded).await;
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_isolated_on_redis() {
    webhooks_are_signed_retried_and_isolated(Stack::Real).await;
}

#[tokio::test]
async fn webhooks_are_managed_by_the_workspaces_service_token_only() {
    let app = spawn_app_with(Stack::Embedded, |_| {}).await;
    let service = app.service_token();
    let user = app.token("u1", "w1", &["admin"], &[]);
    let denied = register_webhook(&app, &user, "w1", "https://example.com/h", "")
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::reason(&denied), "PERMISSION_DENIED");
    let other = app.token("svc", "w2", &["service"], &[]);
    let denied = register_webhook(&app, &other, "w1", "https://example.com/h", "")
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::reason(&denied), "PERMISSION_DENIED");
    for (url, secret) in [
        ("ftp://example.com/", ""),
        ("https://user:pw@example.com/", ""),
        ("https://example.com/", "whsec_c2hvcnQ="),
        ("https://example.com/", "not-a-secret"),
    ] {
        let refused = register_webhook(&app, &service, "w1", url, secret)
            .await
            .unwrap_err();
        assert_eq!(
            crate::helpers::reason(&refused),
            "INVALID_REQUEST",
            "{url} {secret}"
        );
    }
    let mut ids = Vec::new();
    for n in 0..10 {
        let hook = register_webhook(&app, &service, "w1", &format!("https://e.com/{n}"), "")
            .await
            .unwrap();
        ids.push(hook.id);
    }
    let refused = register_webhook(&app, &service, "w1", "https://e.com/11", "")
        .await
        .unwrap_err();
    assert_eq!(crate::helpers::reason(&refused), "INVALID_REQUEST");
    let listed = app
        .registry
        .clone()
        .list_webhooks(imaging_e2e::service::authed(
            &service,
            v1::ListWebhooksRequest {
                workspace_id: "w1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .webhooks;
    let mut listed_ids: Vec<String> = listed.iter().map(|h| h.id.clone()).collect();
    listed_ids.sort();
    let mut registered = ids.clone();
    registered.sort();
    assert_eq!(listed_ids, registered);
    assert!(
        listed.iter().all(|h| h.secret.is_empty()),
        "secrets are not listed"
    );
    let remove = |id: String| {
        let mut registry = app.registry.clone();
        let service = service.clone();
        async move {
            registry
                .remove_webhook(imaging_e2e::service::authed(
                    &service,
                    v1::RemoveWebhookRequest {
                        workspace_id: "w1".into(),
                        webhook_id: id,
                    },
                ))
                .await
        }
    };
    remove(ids[0].clone()).await.unwrap();
    let gone = remove(ids[0].clone()).await.unwrap_err();
    assert_eq!(crate::helpers::reason(&gone), "TARGET_NOT_FOUND");
    register_webhook(&app, &service, "w1", "https://e.com/again", "")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replica_delivers_what_a_killed_one_committed_but_never_published() {
    let nats = NatsServer::start();
    let url = nats.url();
    let data = tempfile::tempdir().unwrap();
    let (backend, _store, _servers) = shared_backend(Stack::Real, data.path()).await;
    let mut survivor_env = relay_env(&backend, &url, None);
    survivor_env.push(("APP__EVENTS__SCAN_SECONDS".into(), "1".into()));
    let survivor = start(&survivor_env).await;
    // Replica A commits, reads its events and stops before publishing any; then it is killed.
    let mut doomed = start(&relay_env(&backend, &url, Some("read"))).await;
    doomed
        .register_workspace(&doomed.channel().await, "w1")
        .await;
    let ids = upload_receipts(&doomed, 5, 0).await;
    doomed.kill();
    // The survivor finds them in its scan once A's hold lapses, and publishes each once.
    let all = until_stream(&url, |all| stored_ids(all).len() >= ids.len()).await;
    assert_each_once(&all);
    assert_eq!(stored_ids(&all), ids, "in commit order");
    drop(survivor);
}
