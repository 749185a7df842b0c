//! Load shedding and draining through the gateway: the service's OVERLOADED and SHUTTING_DOWN
//! refusals are 503 with `Retry-After` in both dialects, never a 500.

use crate::helpers::{TestStack, spawn_stack_with};
use imaging_e2e::fixtures::jpeg;
use imaging_proto::v1::{self, TargetKind, upload_image_request::Part};
use tokio::sync::mpsc;

/// Opens an upload straight to the service and leaves it half sent, holding its slot.
async fn hold_a_slot(stack: &TestStack) -> mpsc::Sender<v1::UploadImageRequest> {
    let token = stack.token("holder", "w1", &[], &[]);
    let mut client = v1::image_ingest_client::ImageIngestClient::connect(stack.grpc.clone())
        .await
        .unwrap();
    let (sender, receiver) = mpsc::channel(4);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio::spawn(async move { client.upload_image(request).await });
    let header = v1::UploadHeader {
        target: Some(v1::Target {
            kind: TargetKind::Receipt as i32,
            ..Default::default()
        }),
        content_type: "image/jpeg".into(),
        ..Default::default()
    };
    for part in [
        Part::Header(header),
        Part::Chunk(jpeg(40, 30)[..100].to_vec().into()),
    ] {
        sender
            .send(v1::UploadImageRequest { part: Some(part) })
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sender
}

/// A Concur receipt upload and a workspace receipt upload through the gateway; each answer's
/// status, `Retry-After` and error code (XML message or JSON code).
async fn both_dialects(stack: &TestStack) -> Vec<(u16, Option<String>, String)> {
    let concur_token = stack.token("u1", "w1", &[], &[]);
    let concur = stack
        .post_raw(
            "/api/image/v1.0/receipt",
            &concur_token,
            "image/jpeg",
            jpeg(40, 30),
        )
        .await;
    let workspace_token = stack.token("u2", "w1", &["owner"], &[]);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(jpeg(40, 30))
            .file_name("r.jpg")
            .mime_str("image/jpeg")
            .unwrap(),
    );
    let workspace = stack
        .http
        .post(stack.url("/api/v1/client/workspace/w1/expenses/x1/receipt"))
        .bearer_auth(workspace_token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for response in [concur, workspace] {
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        out.push((status, retry, response.text().await.unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_draining_service_is_503_with_retry_after_in_both_dialects() {
    let mut stack = spawn_stack_with(|settings| {
        settings.limits.admission.max_in_flight = 1;
        settings.server.drain_seconds = 20;
    })
    .await;
    stack.register_workspace("w1", 0).await;
    stack
        .register_target(TargetKind::WorkspaceExpense, "x1", "w1", "u2")
        .await;
    let held = hold_a_slot(&stack).await;

    let answers = both_dialects(&stack).await;
    for (status, retry, body) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert!(
            retry
                .as_deref()
                .is_some_and(|s| s.parse::<u64>().unwrap() >= 1),
            "{retry:?}"
        );
    }
    assert!(
        answers[0].2.starts_with("<Error><Message>"),
        "{}",
        answers[0].2
    );
    assert!(
        answers[1].2.contains("\"code\":\"OVERLOADED\""),
        "{}",
        answers[1].2
    );
    assert!(stack.objects().await.is_empty());

    stack.stop_service();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answers = both_dialects(&stack).await;
    for (status, retry, body) in &answers {
        assert_eq!(*status, 503, "while draining: {body}");
        assert!(retry.is_some(), "while draining: {body}");
    }
    drop(held);
}

/// A JPEG photo of about 1 MB.
fn megabyte_photo() -> Vec<u8> {
    imaging_e2e::fixtures::scenes::photo_jpeg(1600, 1200, 11, 92)
}

/// The expenses `x{i}` of `uploads` (`(workspace, i)`, each registered to user `u{i}`), each
/// sent `bytes` at once by its owner through the gateway: how many were created (201) and how
/// many refused as 503 `OVERLOADED` with `Retry-After`; any other answer fails the test.
async fn created_or_overloaded(
    stack: &TestStack,
    round: usize,
    uploads: &[(String, usize)],
    bytes: &[u8],
) -> (usize, usize) {
    let calls = uploads.iter().map(|(workspace, i)| {
        let token = stack.token(&format!("u{i}"), workspace, &["owner"], &[]);
        let path = format!("/api/v1/client/workspace/{workspace}/expenses/x{i}/receipt");
        let bytes = bytes.to_vec();
        async move {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes)
                    .file_name("r.jpg")
                    .mime_str("image/jpeg")
                    .unwrap(),
            );
            let response = stack
                .http
                .post(stack.url(&path))
                .bearer_auth(token)
                .multipart(form)
                .send()
                .await
                .map_err(|err| format!("no answer: {err}"))?;
            let status = response.status().as_u16();
            let retry = response.headers().contains_key("retry-after");
            let body = response.text().await.map_err(|err| err.to_string())?;
            Ok::<_, String>((status, retry, body))
        }
    });
    let (mut created, mut refused) = (0, 0);
    for outcome in futures::future::join_all(calls).await {
        match outcome {
            Ok((201, _, _)) => created += 1,
            Ok((503, true, body)) if body.contains("\"code\":\"OVERLOADED\"") => refused += 1,
            other => panic!("round {round}: {other:?}"),
        }
    }
    (created, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_uploads_than_slots_through_the_gateway_each_end_201_or_503_overloaded() {
    let stack = spawn_stack_with(|settings| settings.limits.admission.max_in_flight = 4).await;
    let bytes = megabyte_photo();
    let (mut created, mut refused) = (0, 0);
    for round in 0..3 {
        let workspace = format!("w{round}");
        stack.register_workspace(&workspace, 0).await;
        for i in 0..32 {
            let (id, user) = (format!("x{i}"), format!("u{i}"));
            stack
                .register_target(TargetKind::WorkspaceExpense, &id, &workspace, &user)
                .await;
        }
        let uploads: Vec<(String, usize)> = (0..32).map(|i| (workspace.clone(), i)).collect();
        let (c, r) = created_or_overloaded(&stack, round, &uploads, &bytes).await;
        (created, refused) = (created + c, refused + r);
    }
    assert!(created >= 4, "{created} created");
    assert!(refused >= 1, "{refused} refused");
    assert_eq!(created + refused, 96);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_twenty_eight_clients_through_the_gateway_get_201_or_503_overloaded() {
    // The service's default limit of 64 uploads in flight; eight workspaces of 16 clients each,
    // under the per-workspace limit (32), so the global one is what refuses.
    let stack = spawn_stack_with(|settings| {
        assert_eq!(
            settings.limits.admission.max_in_flight, 64,
            "the default limit"
        );
    })
    .await;
    let workspaces: Vec<String> = (0..8).map(|n| format!("c{n}")).collect();
    let uploads: Vec<(String, usize)> = (0..128).map(|i| (workspaces[i % 8].clone(), i)).collect();
    for workspace in &workspaces {
        stack.register_workspace(workspace, 0).await;
    }
    for (workspace, i) in &uploads {
        let (id, user) = (format!("x{i}"), format!("u{i}"));
        stack
            .register_target(TargetKind::WorkspaceExpense, &id, workspace, &user)
            .await;
    }
    let bytes = imaging_e2e::fixtures::scenes::photo_jpeg(400, 300, 5, 90);
    let (created, refused) = created_or_overloaded(&stack, 0, &uploads, &bytes).await;
    println!("{created} created, {refused} refused");
    assert_eq!(created + refused, 128);
    assert!(created >= 64, "{created} created, {refused} refused");
}
