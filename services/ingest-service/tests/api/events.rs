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
use imaging_proto::v1::TargetKind;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
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
        let bytes = png(10 + base + n, 10);
        let head =
            imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/png", &bytes);
        let response = client
            .clone()
            .upload_image(imaging_e2e::service::authed(
                &token,
                tokio_stream::iter(imaging_e2e::service::messages(head, &bytes, 1 << 16)),
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(response.image_id);
    }
    ids
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
        let bytes = png(10 + base + n, 12);
        let head =
            imaging_e2e::service::header(target(TargetKind::Receipt, ""), "image/png", &bytes);
        let response = client
            .clone()
            .upload_image(imaging_e2e::service::authed(
                &token,
                tokio_stream::iter(imaging_e2e::service::messages(head, &bytes, 1 << 16)),
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(response.image_id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids
}
