//! Concur Receipts v4 image-only receipts over HTTP against the real stack, driven the way
//! Concur documents it: `curl -F image=@file;type=...`, then the processing-status link polled
//! until PROCESSED, the user's list, the receipt's metadata and its image downloaded and
//! compared; a corrupt file accepted with 202 that ends FAILED; and the error statuses.

use crate::helpers::{Stack, TestStack, spawn_stack_on};
use imaging_e2e::fixtures::{self, jpeg, png};
use serde_json::Value;
use std::time::Duration;

/// What `curl -i` printed: the status, the headers (names lower-cased) and the body.
struct Curled {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Curled {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Runs `curl -s -i` with `args`; a file argument is written to a temp dir first.
async fn curl(args: &[String]) -> Curled {
    let output = tokio::process::Command::new("curl")
        .arg("-s")
        .arg("-i")
        .args(args)
        .output()
        .await
        .expect("curl must be installed (the README's test command installs it)");
    assert!(output.status.success(), "curl failed: {output:?}");
    let raw = output.stdout;
    // The last header block (a followed redirect prints one per response).
    let mut start = 0;
    let mut parsed = None;
    while let Some(end) = find(&raw[start..], b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[start..start + end]).into_owned();
        let body_start = start + end + 4;
        parsed = Some((head, body_start));
        if raw[body_start..].starts_with(b"HTTP/") {
            start = body_start;
        } else {
            break;
        }
    }
    let (head, body_start) = parsed.expect("an HTTP response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Curled {
        status,
        headers,
        body: raw[body_start..].to_vec(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn bearer(token: &str) -> [String; 2] {
    ["-H".into(), format!("Authorization: Bearer {token}")]
}

/// `curl -X POST .../image-only-receipts -H 'Authorization: Bearer ...' -F 'image=@file;type=...'`.
async fn post(
    stack: &TestStack,
    user: &str,
    token: &str,
    file: &std::path::Path,
    kind: &str,
) -> Curled {
    let mut args = vec![
        "-X".to_owned(),
        "POST".to_owned(),
        stack.url(&format!("/receipts/v4/users/{user}/image-only-receipts")),
    ];
    args.extend(bearer(token));
    args.push("-F".into());
    args.push(format!("image=@{};type={kind}", file.display()));
    curl(&args).await
}

async fn get(stack: &TestStack, path: &str, token: &str) -> Curled {
    let mut args = vec![stack.url(path)];
    args.extend(bearer(token));
    curl(&args).await
}

/// The receipt ID in a `Location` of `/receipts/v4/images/{id}`.
fn accepted_id(answer: &Curled) -> String {
    assert_eq!(
        answer.status,
        202,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.body.is_empty());
    let location = answer.header("location").expect("Location");
    let id = location
        .strip_prefix("/receipts/v4/images/")
        .expect("the image's path")
        .to_owned();
    assert_eq!(
        answer.header("link"),
        Some(format!("</receipts/v4/status/{id}>; rel=\"processing-status\"").as_str())
    );
    id
}

/// Polls the processing-status link until the receipt is PROCESSED or FAILED.
async fn final_status(stack: &TestStack, id: &str, token: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(stack, &format!("/receipts/v4/status/{id}"), token).await;
        assert_eq!(answer.status, 200);
        let status = answer.json();
        if status["status"] == "PROCESSED" || status["status"] == "FAILED" {
            return status;
        }
        assert!(
            ["ACCEPTED", "PROCESSING"].contains(&status["status"].as_str().unwrap()),
            "{status}"
        );
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn temp_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn a_v4_client_posts_follows_the_status_lists_and_downloads_what_it_sent() {
    let stack = spawn_stack_on(Stack::Real, |_| {}, |_| {}).await;
    let token = stack.token("u1", "w1", &[], &[]);
    let files = tempfile::tempdir().unwrap();
    let small = png(320, 200);
    let big = jpeg(3000, 2000);
    let small_path = temp_file(&files, "receipt.png", &small);
    let big_path = temp_file(&files, "photo.jpg", &big);

    let index = get(&stack, "/receipts/", &token).await;
    assert_eq!(index.status, 200);
    let links = index.json()["links"].as_array().unwrap().clone();
    assert!(links.iter().any(|l| l["rel"] == "image-only-receipts"
        && l["method"] == "POST"
        && l["href"] == "/receipts/v4/users/{userId}/image-only-receipts"));

    let small_id = accepted_id(&post(&stack, "u1", &token, &small_path, "image/png").await);
    let big_id = accepted_id(&post(&stack, "u1", &token, &big_path, "image/jpeg").await);
    for id in [&small_id, &big_id] {
        let status = final_status(&stack, id, &token).await;
        assert_eq!(status["status"], "PROCESSED", "{status}");
        let logs = status["logs"].as_array().unwrap();
        assert!(logs.len() >= 3, "{status}");
        for line in logs {
            assert!(["INFO", "WARNING", "ERROR"].contains(&line["logLevel"].as_str().unwrap()));
            assert!(!line["message"].as_str().unwrap().is_empty());
            let at = line["timestamp"].as_str().unwrap();
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| panic!("{at}"));
        }
    }

    // The user's list, newest first, with each receipt's image link.
    let list = get(&stack, "/receipts/v4/users/u1/image-only-receipts", &token).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let items = list["receiptsImages"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&small_id.as_str()) && ids.contains(&big_id.as_str()));
    assert!(list["next"].is_null());
    for item in items {
        assert_eq!(item["userId"], "u1");
        assert_eq!(
            item["image"],
            format!("/receipts/v4/images/{}", item["id"].as_str().unwrap())
        );
        let at = item["dateTimeReceived"].as_str().unwrap();
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    }
    let paged = get(
        &stack,
        "/receipts/v4/users/u1/image-only-receipts?limit=1",
        &token,
    )
    .await;
    let next = paged.json()["next"].as_str().unwrap().to_owned();
    let rest = get(&stack, &next, &token).await.json();
    assert_eq!(rest["receiptsImages"].as_array().unwrap().len(), 1);
    assert!(rest["next"].is_null());

    // One receipt's metadata.
    let meta = get(
        &stack,
        &format!("/receipts/v4/image-only-receipts/{small_id}"),
        &token,
    )
    .await;
    assert_eq!(meta.status, 200);
    let meta = meta.json();
    assert_eq!(meta["id"], small_id.as_str());
    assert_eq!(meta["userId"], "u1");
    assert_eq!(meta["image"], format!("/receipts/v4/images/{small_id}"));

    // The image, by both paths, followed to its bytes: the PNG as sent, the JPEG reduced.
    for path in [
        format!("/receipts/v4/images/{small_id}"),
        format!("/receipts/v4/image-only-receipts/{small_id}/image"),
    ] {
        let redirect = get(&stack, &path, &token).await;
        assert_eq!(redirect.status, 302);
        let mut args = vec!["-L".to_owned(), stack.url(&path)];
        args.extend(bearer(&token));
        let downloaded = curl(&args).await;
        assert_eq!(downloaded.status, 200);
        assert_eq!(downloaded.body, small);
    }
    let mut args = vec![
        "-L".to_owned(),
        stack.url(&format!("/receipts/v4/images/{big_id}")),
    ];
    args.extend(bearer(&token));
    let reduced = curl(&args).await;
    assert_eq!(fixtures::pillow_reads(&reduced.body), "JPEG 2200 1467");
    assert_eq!(
        stack.used("w1").await,
        small.len() as u64 + reduced.body.len() as u64
    );
}

#[tokio::test]
async fn a_corrupt_file_is_accepted_and_ends_failed_with_a_reason_a_user_can_read() {
    let stack = spawn_stack_on(Stack::Embedded, |_| {}, |_| {}).await;
    let token = stack.token("u1", "w1", &[], &[]);
    let files = tempfile::tempdir().unwrap();
    let mut corrupt = jpeg(64, 64);
    corrupt.truncate(200);
    corrupt.extend(std::iter::repeat_n(0x55, 4000));
    let path = temp_file(&files, "broken.jpg", &corrupt);
    let id = accepted_id(&post(&stack, "u1", &token, &path, "image/jpeg").await);
    let status = final_status(&stack, &id, &token).await;
    assert_eq!(status["status"], "FAILED", "{status}");
    let last = status["logs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["logLevel"], "ERROR");
    assert!(
        last["message"].as_str().unwrap().contains("corrupt"),
        "{last}"
    );
    let image = get(&stack, &format!("/receipts/v4/images/{id}"), &token).await;
    assert_eq!(image.status, 404);
    let meta = get(
        &stack,
        &format!("/receipts/v4/image-only-receipts/{id}"),
        &token,
    )
    .await;
    assert_eq!(meta.status, 404);
    assert_eq!(stack.used("w1").await, 0);
}

#[tokio::test]
async fn the_v4_routes_answer_the_documented_error_statuses() {
    let stack = spawn_stack_on(
        Stack::Embedded,
        |settings| settings.limits.async_receipts.max_bytes = 200_000,
        |settings| settings.limits.receipts_v4_max_upload_bytes = 200_000,
    )
    .await;
    let token = stack.token("u1", "w1", &[], &[]);
    let files = tempfile::tempdir().unwrap();
    let receipt = temp_file(&files, "r.png", &png(40, 40));
    // No token: 401, before the body is read.
    let mut args = vec![
        "-X".to_owned(),
        "POST".to_owned(),
        stack.url("/receipts/v4/users/u1/image-only-receipts"),
        "-F".to_owned(),
        format!("image=@{};type=image/png", receipt.display()),
    ];
    let anonymous = curl(&args).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.json()["code"].is_string());
    args.extend(bearer("not-a-token"));
    assert_eq!(curl(&args).await.status, 401);
    // Another user: 403 for a user, 202 for an admin of the workspace.
    let other = post(&stack, "u2", &token, &receipt, "image/png").await;
    assert_eq!(other.status, 403);
    let admin = stack.token("boss", "w1", &["company_admin"], &[]);
    let for_u2 = accepted_id(&post(&stack, "u2", &admin, &receipt, "image/png").await);
    assert_eq!(
        final_status(&stack, &for_u2, &admin).await["status"],
        "PROCESSED"
    );
    let u2 = stack.token("u2", "w1", &[], &[]);
    let theirs = get(&stack, "/receipts/v4/users/u2/image-only-receipts", &u2).await;
    assert_eq!(theirs.json()["receiptsImages"][0]["id"], for_u2.as_str());
    assert_eq!(
        get(&stack, "/receipts/v4/users/u2/image-only-receipts", &token)
            .await
            .status,
        403
    );
    assert_eq!(
        get(&stack, &format!("/receipts/v4/status/{for_u2}"), &token)
            .await
            .status,
        403
    );
    // Unknown receipt: 404; a malformed ID: 400.
    let unknown = "0".repeat(32);
    assert_eq!(
        get(&stack, &format!("/receipts/v4/status/{unknown}"), &token)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&stack, &format!("/receipts/v4/images/{unknown}"), &token)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&stack, "/receipts/v4/status/a%2Fb", &token)
            .await
            .status,
        400
    );
    // Over the dialect's size: 413. A type it does not take: 415. No `image` field: 400.
    let large = temp_file(&files, "large.png", &fixtures::noise_png(400));
    assert_eq!(
        post(&stack, "u1", &token, &large, "image/png").await.status,
        413
    );
    let webp = temp_file(&files, "x.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 ");
    let refused = post(&stack, "u1", &token, &webp, "image/webp").await;
    assert_eq!(refused.status, 415);
    assert_eq!(refused.json()["code"], "UNSUPPORTED_MEDIA_TYPE");
    let mut args = vec![
        "-X".to_owned(),
        "POST".to_owned(),
        stack.url("/receipts/v4/users/u1/image-only-receipts"),
        "-F".to_owned(),
        format!("file=@{};type=image/png", receipt.display()),
    ];
    args.extend(bearer(&token));
    assert_eq!(curl(&args).await.status, 400);
    assert!(
        stack
            .objects()
            .await
            .iter()
            .all(|o| !o.key.starts_with("jobs/"))
    );
}

#[tokio::test]
async fn a_v4_upload_resumed_with_the_http_draft_is_accepted_on_completion_and_processed() {
    let stack = spawn_stack_on(Stack::Real, |_| {}, |_| {}).await;
    let token = stack.token("u1", "w1", &[], &[]);
    // Over the synchronous 10 MB: the v4 route's own limit applies to the resumed upload too.
    let bytes = fixtures::noise_png(1900);
    assert!(bytes.len() > 10_485_760);
    let half = bytes.len() / 2;
    let options = stack
        .http
        .request(
            reqwest::Method::OPTIONS,
            stack.url("/receipts/v4/users/u1/image-only-receipts"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        options.headers()["accept-patch"],
        "application/partial-upload"
    );
    assert!(
        options.headers()["upload-limit"]
            .to_str()
            .unwrap()
            .contains("max-size=26214400")
    );
    let created = stack
        .http
        .post(stack.url("/receipts/v4/users/u1/image-only-receipts"))
        .bearer_auth(&token)
        .header("Upload-Draft-Interop-Version", "8")
        .header("Upload-Complete", "?0")
        .header("Content-Type", "image/png")
        .body(bytes[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/resumable/"), "{location}");
    let offset = stack
        .http
        .head(stack.url(&location))
        .bearer_auth(&token)
        .header("Upload-Draft-Interop-Version", "8")
        .send()
        .await
        .unwrap();
    assert_eq!(offset.headers()["upload-offset"], half.to_string().as_str());
    let completed = stack
        .http
        .patch(stack.url(&location))
        .bearer_auth(&token)
        .header("Upload-Draft-Interop-Version", "8")
        .header("Content-Type", "application/partial-upload")
        .header("Upload-Offset", half.to_string())
        .header("Upload-Complete", "?1")
        .body(bytes[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), 202);
    assert_eq!(completed.headers()["upload-complete"], "?1");
    let image_path = completed.headers()["location"].to_str().unwrap().to_owned();
    let id = image_path
        .strip_prefix("/receipts/v4/images/")
        .unwrap()
        .to_owned();
    assert_eq!(
        completed.headers()["link"],
        format!("</receipts/v4/status/{id}>; rel=\"processing-status\"").as_str()
    );
    let status = final_status(&stack, &id, &token).await;
    assert_eq!(status["status"], "PROCESSED", "{status}");
    let mut args = vec!["-L".to_owned(), stack.url(&image_path)];
    args.extend(bearer(&token));
    let downloaded = curl(&args).await;
    assert_eq!(downloaded.body, bytes);
    assert_eq!(stack.used("w1").await, bytes.len() as u64);
    let objects = stack.objects().await;
    assert!(
        objects
            .iter()
            .all(|o| !o.key.starts_with("jobs/") && !o.key.starts_with("sessions/")),
        "{objects:?}"
    );
}

/// Duplicates as every JSON dialect names them, over HTTP with `curl`: a v3 create of bytes
/// the workspace holds (`Duplicates`), a v4 receipt's metadata once processed (`duplicates`),
/// and a workspace expense (`duplicates`).
#[tokio::test]
async fn every_json_dialect_names_the_earlier_images_an_upload_duplicates() {
    let stack = spawn_stack_on(Stack::Embedded, |_| {}, |_| {}).await;
    let token = stack.token("u1", "w1", &[], &[]);
    let files = tempfile::tempdir().unwrap();
    let bytes = png(240, 320);
    let path = temp_file(&files, "receipt.png", &bytes);
    let v3 = |token: &str| {
        let mut args = vec![
            "-X".to_owned(),
            "POST".to_owned(),
            stack.url("/api/v3.0/expense/receiptimages"),
            "-H".into(),
            "Accept: application/json".into(),
            "-H".into(),
            "Content-Type: image/png".into(),
            "--data-binary".into(),
            format!("@{}", path.display()),
        ];
        args.extend(bearer(token));
        args
    };
    let first = curl(&v3(&token)).await;
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let first = first.json();
    assert_eq!(first["Duplicates"], serde_json::json!([]));
    let first_id = first["ID"].as_str().unwrap().to_owned();
    let second = curl(&v3(&token)).await;
    assert_eq!(second.status, 201);
    let second = second.json();
    assert_eq!(
        second["Duplicates"],
        serde_json::json!([{"imageId": first_id, "match": "exact", "distance": 0}])
    );
    let second_id = second["ID"].as_str().unwrap().to_owned();

    let id = accepted_id(&post(&stack, "u1", &token, &path, "image/png").await);
    let status = final_status(&stack, &id, &token).await;
    assert_eq!(status["status"], "PROCESSED", "{status}");
    let metadata = get(
        &stack,
        &format!("/receipts/v4/image-only-receipts/{id}"),
        &token,
    )
    .await;
    assert_eq!(metadata.status, 200);
    let named: Vec<String> = metadata.json()["duplicates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["match"], "exact");
            d["imageId"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(named.len(), 2);
    assert!(named.contains(&first_id) && named.contains(&second_id));

    // Workspace expenses are stored as WebP: the same photo for two expenses is the same bytes.
    let staff = stack.token("u2", "w1", &["staff"], &["financial"]);
    let photo = temp_file(&files, "photo.jpg", &jpeg(400, 300));
    let mut answers = Vec::new();
    for expense in ["X1", "X2"] {
        stack
            .register_target(
                imaging_proto::v1::TargetKind::WorkspaceExpense,
                expense,
                "w1",
                "u1",
            )
            .await;
        let mut args = vec![
            "-X".to_owned(),
            "POST".to_owned(),
            stack.url(&format!(
                "/api/v1/client/workspace/w1/expenses/{expense}/receipt"
            )),
            "-F".into(),
            format!("file=@{};type=image/jpeg", photo.display()),
        ];
        args.extend(bearer(&staff));
        let answer = curl(&args).await;
        assert_eq!(
            answer.status,
            201,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answers.push(answer.json());
    }
    assert_eq!(answers[0]["duplicates"], serde_json::json!([]));
    assert_eq!(
        answers[1]["duplicates"],
        serde_json::json!([{"imageId": "X1", "match": "exact", "distance": 0}])
    );
}
