//! Resumable uploads through the gateway with clients written elsewhere: `tus-js-client` (npm,
//! under Node.js) and `tuspy` (PyPI) upload through a TCP proxy the test controls, which drops
//! the connection part-way; the clients resume, on the embedded default and on S3 + Redis, where
//! the proxy sends the resumed requests to another replica. The stored image, its SHA-256 and
//! the quota are checked at the end; the protocol's answers (OPTIONS, CORS, 409, 460, 412, 415,
//! DELETE, expiry) with a plain HTTP client.

use crate::helpers::{Stack, TestStack, spawn_stack_on};
use imaging_e2e::fixtures::{jpeg, noise_png};
use imaging_e2e::proxy::CutProxy;
use imaging_proto::v1;
use sha2::Digest as _;
use std::time::Duration;

/// The clients' folder (its `node_modules` installed by `scripts/test.sh`).
fn clients() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs a client to its end and reads the JSON line it prints.
async fn run_client(mut command: tokio::process::Command) -> serde_json::Value {
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the client finishes")
        .expect("the client starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "client printed {stdout:?}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "client failed: {value}");
    value
}

/// Uploads `bytes` with tus-js-client to `endpoint`.
async fn tus_js(
    endpoint: &str,
    token: &str,
    bytes: &[u8],
    metadata: serde_json::Value,
) -> serde_json::Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(clients().join("tus_upload.mjs"))
        .arg(endpoint)
        .arg(file.path())
        .arg(token)
        .arg(metadata.to_string());
    run_client(command).await
}

/// Uploads `bytes` with tuspy to `endpoint`, `chunk` bytes a PATCH, each with a SHA-1
/// `Upload-Checksum`.
async fn tuspy(
    endpoint: &str,
    token: &str,
    bytes: &[u8],
    metadata: serde_json::Value,
    chunk: usize,
) -> serde_json::Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(clients().join("tus_upload.py"))
        .arg(endpoint)
        .arg(file.path())
        .arg(token)
        .arg(metadata.to_string())
        .arg(chunk.to_string());
    run_client(command).await
}

/// What a user checks once the upload is done: the image the answer names holds the very
/// bytes, and the quota was charged them once.
async fn assert_stored(stack: &TestStack, token: &str, image_id: &str, bytes: &[u8]) {
    let info = stack
        .app
        .get_image(
            token,
            imaging_e2e::service::target(v1::TargetKind::Receipt, image_id),
        )
        .await
        .unwrap();
    assert_eq!(info.sha256, sha2::Sha256::digest(bytes).to_vec());
    let (status, fetched) = stack.app.fetch(&info.url).await;
    assert_eq!(status, 200);
    assert!(fetched == bytes, "the stored image is the uploaded file");
    assert_eq!(stack.app.used("w1").await, bytes.len() as u64);
    let staged = stack
        .app
        .objects()
        .await
        .into_iter()
        .filter(|object| object.key.starts_with("sessions/"))
        .count();
    assert_eq!(staged, 0, "nothing staged is left");
}

fn receipt_metadata() -> serde_json::Value {
    serde_json::json!({ "kind": "receipt", "filename": "scan.png", "filetype": "image/png" })
}

/// A stack on `stack_kind`, and a proxy in front of its gateway that cuts the connection once
/// `cut_after` bytes went through; after the cut, on S3 + Redis, it sends every request to
/// another replica (its own gateway and service on the same backends).
struct CutStack {
    stack: TestStack,
    proxy: CutProxy,
    _replica: Option<imaging_e2e::stack::Replica>,
}

async fn cut_stack(stack_kind: Stack, cut_after: u64) -> CutStack {
    let stack = spawn_stack_on(stack_kind, |_| {}, |_| {}).await;
    let replica = match stack_kind {
        Stack::Embedded => None,
        _ => Some(stack.replica().await),
    };
    let first = stack.base.trim_start_matches("http://").to_owned();
    let then = replica.as_ref().map_or(first.clone(), |replica| {
        replica.base.trim_start_matches("http://").to_owned()
    });
    let proxy = CutProxy::start(&first, &then, cut_after).await;
    CutStack {
        stack,
        proxy,
        _replica: replica,
    }
}

async fn tus_js_resumes_a_cut_upload(stack_kind: Stack) {
    let bytes = noise_png(900);
    let size = bytes.len() as u64;
    let CutStack {
        stack,
        proxy,
        _replica: _replica_kept_running,
    } = cut_stack(stack_kind, size * 3 / 5).await;
    let token = stack.token("u1", "w1", &[], &[]);
    let seen = tus_js(
        &format!("{}/api/uploads/", proxy.base),
        &token,
        &bytes,
        receipt_metadata(),
    )
    .await;
    assert!(proxy.was_cut(), "the connection was cut: {seen}");
    // Resumed, not sent again from the start.
    assert!(
        proxy.sent() < size + size / 2,
        "{} bytes sent for {size}: {seen}",
        proxy.sent()
    );
    let statuses: Vec<&str> = seen["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|status| status.as_str())
        .collect();
    assert!(
        statuses.contains(&"HEAD 200"),
        "the client asked where to resume: {seen}"
    );
    let image_id = seen["imageId"]
        .as_str()
        .expect("Image-Id on the last PATCH");
    assert_eq!(
        seen["location"].as_str(),
        Some(format!("/api/v3.0/expense/receiptimages/{image_id}").as_str())
    );
    assert_eq!(
        seen["offsets"].as_array().unwrap().last(),
        Some(&serde_json::json!(size))
    );
    assert_stored(&stack, &token, image_id, &bytes).await;
    // HEAD on the finished upload says the same.
    let url = seen["url"].as_str().unwrap();
    let head = stack
        .http
        .head(format!(
            "{}{}",
            stack.base,
            url.trim_start_matches(&proxy.base)
        ))
        .header("Authorization", format!("Bearer {token}"))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["image-id"], image_id);
    assert_eq!(head.headers()["upload-offset"], size.to_string().as_str());
}

#[tokio::test]
async fn tus_js_client_resumes_a_cut_upload_on_the_embedded_default() {
    tus_js_resumes_a_cut_upload(Stack::Embedded).await;
}

#[tokio::test]
async fn tus_js_client_resumes_a_cut_upload_on_another_replica_over_s3_and_redis() {
    tus_js_resumes_a_cut_upload(Stack::Real).await;
}

async fn tuspy_resumes_a_cut_upload(stack_kind: Stack) {
    let bytes = noise_png(800);
    let size = bytes.len() as u64;
    let CutStack {
        stack,
        proxy,
        _replica: _replica_kept_running,
    } = cut_stack(stack_kind, size * 2 / 5).await;
    let token = stack.token("u1", "w1", &[], &[]);
    let seen = tuspy(
        &format!("{}/api/uploads/", proxy.base),
        &token,
        &bytes,
        receipt_metadata(),
        512 * 1024,
    )
    .await;
    assert!(proxy.was_cut(), "the connection was cut: {seen}");
    assert!(
        proxy.sent() < size + size / 2,
        "{} bytes sent for {size}",
        proxy.sent()
    );
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["offset"], size.to_string().as_str());
    let image_id = seen["imageId"].as_str().expect("Image-Id on HEAD");
    assert_eq!(
        seen["location"].as_str(),
        Some(format!("/api/v3.0/expense/receiptimages/{image_id}").as_str())
    );
    assert_stored(&stack, &token, image_id, &bytes).await;
}

#[tokio::test]
async fn tuspy_resumes_a_cut_checksummed_upload_on_the_embedded_default() {
    tuspy_resumes_a_cut_upload(Stack::Embedded).await;
}

#[tokio::test]
async fn tuspy_resumes_a_cut_checksummed_upload_on_another_replica_over_s3_and_redis() {
    tuspy_resumes_a_cut_upload(Stack::Real).await;
}

/// A tus request with the stack's token.
fn tus(
    stack: &TestStack,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    stack
        .http
        .request(method, stack.url(path))
        .header("Authorization", format!("Bearer {token}"))
        .header("Tus-Resumable", "1.0.0")
}

fn metadata(pairs: &[(&str, &str)]) -> String {
    use base64::Engine;
    pairs
        .iter()
        .map(|(key, value)| {
            format!(
                "{key} {}",
                base64::engine::general_purpose::STANDARD.encode(value)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

async fn create(stack: &TestStack, token: &str, length: usize) -> String {
    let created = tus(stack, reqwest::Method::POST, "/api/uploads/", token)
        .header("Upload-Length", length.to_string())
        .header(
            "Upload-Metadata",
            metadata(&[("kind", "receipt"), ("filetype", "image/jpeg")]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(created.headers().contains_key("upload-expires"));
    created.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_tus_protocol_answers_as_its_specification_says() {
    let stack = spawn_stack_on(Stack::Embedded, |_| {}, |_| {}).await;
    let token = stack.token("u1", "w1", &[], &[]);
    use sha1::Digest as _;
    // OPTIONS says what is spoken, and answers a browser's preflight.
    let options = stack
        .http
        .request(reqwest::Method::OPTIONS, stack.url("/api/uploads/"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 204);
    let headers = options.headers();
    assert_eq!(headers["tus-version"], "1.0.0");
    assert_eq!(headers["tus-max-size"], "10485760");
    assert_eq!(headers["tus-checksum-algorithm"], "sha1,sha256");
    for extension in [
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
        "expiration",
    ] {
        assert!(
            headers["tus-extension"]
                .to_str()
                .unwrap()
                .split(',')
                .any(|e| e == extension),
            "{extension}"
        );
    }
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    for exposed in [
        "Upload-Offset",
        "Location",
        "Image-Id",
        "Content-Location",
        "Upload-Expires",
    ] {
        assert!(
            headers["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .contains(exposed),
            "{exposed}"
        );
    }
    // Another protocol version is refused.
    let wrong = stack
        .http
        .post(stack.url("/api/uploads/"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 412);
    assert_eq!(wrong.headers()["tus-version"], "1.0.0");

    let bytes = jpeg(96, 96);
    let location = create(&stack, &token, bytes.len()).await;
    assert!(location.starts_with("/api/uploads/"), "{location}");
    let patch = |offset: usize, body: Vec<u8>| {
        tus(&stack, reqwest::Method::PATCH, &location, &token)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset.to_string())
            .body(body)
    };
    let sent = patch(0, bytes[..1000].to_vec()).send().await.unwrap();
    assert_eq!(sent.status(), 204);
    assert_eq!(sent.headers()["upload-offset"], "1000");
    assert!(sent.headers().contains_key("upload-expires"));
    // An offset that is not the upload's: 409, nothing written.
    let conflict = patch(500, bytes[500..].to_vec()).send().await.unwrap();
    assert_eq!(conflict.status(), 409);
    let body: serde_json::Value = conflict.json().await.unwrap();
    assert_eq!(body["code"], "OFFSET_MISMATCH");
    // A checksum that does not match the body: 460, nothing written.
    let bad = patch(1000, bytes[1000..2000].to_vec())
        .header("Upload-Checksum", "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 460);
    // A body of another type: 415.
    let typed = tus(&stack, reqwest::Method::PATCH, &location, &token)
        .header("Content-Type", "image/jpeg")
        .header("Upload-Offset", "1000")
        .body(bytes[1000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), 415);
    let head = tus(&stack, reqwest::Method::HEAD, &location, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-offset"], "1000");
    assert_eq!(
        head.headers()["upload-length"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(head.headers()["cache-control"], "no-store");
    assert!(
        head.headers()["upload-metadata"]
            .to_str()
            .unwrap()
            .contains("kind ")
    );
    // Someone else's token does not find it.
    let stranger = stack.token("u2", "w1", &[], &[]);
    let hidden = tus(&stack, reqwest::Method::HEAD, &location, &stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404);
    // A good checksum completes it: 204 with the image.
    use base64::Engine;
    let sha1 = sha1::Sha1::digest(&bytes[1000..]);
    let done = patch(1000, bytes[1000..].to_vec())
        .header(
            "Upload-Checksum",
            format!(
                "sha1 {}",
                base64::engine::general_purpose::STANDARD.encode(sha1)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 204);
    let image_id = done.headers()["image-id"].to_str().unwrap().to_owned();
    assert_eq!(
        done.headers()["content-location"],
        format!("/api/v3.0/expense/receiptimages/{image_id}").as_str()
    );
    assert_eq!(stack.app.used("w1").await, bytes.len() as u64);

    // Creation with upload, then termination: the quota it held is free again.
    let created = tus(&stack, reqwest::Method::POST, "/api/uploads/", &token)
        .header("Upload-Length", bytes.len().to_string())
        .header("Upload-Metadata", metadata(&[("filename", "scan.jpg")]))
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes[..3000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["upload-offset"], "3000");
    let second = created.headers()["location"].to_str().unwrap().to_owned();
    let deleted = tus(&stack, reqwest::Method::DELETE, &second, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = tus(&stack, reqwest::Method::HEAD, &second, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    // A length over the limit, or no length, is refused at creation.
    let too_big = tus(&stack, reqwest::Method::POST, "/api/uploads/", &token)
        .header("Upload-Length", "10485761")
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let deferred = tus(&stack, reqwest::Method::POST, "/api/uploads/", &token)
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(deferred.status(), 400);
}

/// A hostile client cannot hold more than its share: its open uploads are capped, and one that
/// stalls mid-PATCH is cut off by the service's pace (the bytes it did send are kept).
#[tokio::test]
async fn a_client_holds_no_more_than_its_share_of_uploads() {
    let stack = spawn_stack_on(
        Stack::Embedded,
        |settings| {
            settings.limits.sessions.max_open_per_user = 2;
            settings.limits.upload.idle_seconds = 1;
        },
        |_| {},
    )
    .await;
    let token = stack.token("u1", "w1", &[], &[]);
    let bytes = jpeg(96, 96);
    let first = create(&stack, &token, bytes.len()).await;
    create(&stack, &token, bytes.len()).await;
    let third = tus(&stack, reqwest::Method::POST, "/api/uploads/", &token)
        .header("Upload-Length", bytes.len().to_string())
        .header("Upload-Metadata", metadata(&[("filetype", "image/jpeg")]))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    let body: serde_json::Value = third.json().await.unwrap();
    assert_eq!(body["code"], "TOO_MANY_OPEN_UPLOADS");
    // A PATCH that sends 2,000 bytes and then nothing.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    sender.send(Ok(bytes[..2000].to_vec())).await.unwrap();
    let stalled = tus(&stack, reqwest::Method::PATCH, &first, &token)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "0")
        .header("Content-Length", bytes.len().to_string())
        .body(reqwest::Body::wrap_stream(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        ))
        .send();
    let answered = tokio::time::timeout(Duration::from_secs(20), stalled)
        .await
        .expect("the service does not wait for a stalled body");
    drop(sender);
    assert_eq!(answered.unwrap().status(), 408);
    let head = tus(&stack, reqwest::Method::HEAD, &first, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["upload-offset"], "2000");
}

#[tokio::test]
async fn an_expired_tus_upload_is_gone_with_its_bytes() {
    let stack = spawn_stack_on(
        Stack::Real,
        |settings| settings.limits.sessions.ttl_seconds = 2,
        |_| {},
    )
    .await;
    let token = stack.token("u1", "w1", &[], &[]);
    let bytes = jpeg(96, 96);
    let location = create(&stack, &token, bytes.len()).await;
    let sent = tus(&stack, reqwest::Method::PATCH, &location, &token)
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", "0")
        .body(bytes[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 204);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let head = tus(&stack, reqwest::Method::HEAD, &location, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    let staged = stack
        .app
        .objects()
        .await
        .into_iter()
        .filter(|object| object.key.starts_with("sessions/"))
        .count();
    assert_eq!(staged, 0);
}

/// An HTTP resumable-upload client (draft-ietf-httpbis-resumable-upload, interop version 8)
/// written here from the draft's text, against each upload route: careful creation
/// (`Upload-Complete: ?0`), offset retrieval, appends (one of them cut off mid-body), a
/// mismatching offset, completion with the route's own answer, and appends after completion.
mod draft {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const VERSION: &str = "8";

    struct Route {
        path: &'static str,
        /// Extra request headers of the route (`Accept`).
        accept: Option<&'static str>,
        content_type: &'static str,
    }

    async fn head(stack: &TestStack, location: &str, token: &str) -> reqwest::Response {
        stack
            .http
            .head(stack.url(location))
            .header("Authorization", format!("Bearer {token}"))
            .header("Upload-Draft-Interop-Version", VERSION)
            .send()
            .await
            .unwrap()
    }

    fn append(
        stack: &TestStack,
        location: &str,
        token: &str,
        offset: usize,
        complete: bool,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        stack
            .http
            .patch(stack.url(location))
            .header("Authorization", format!("Bearer {token}"))
            .header("Upload-Draft-Interop-Version", VERSION)
            .header("Content-Type", "application/partial-upload")
            .header("Upload-Offset", offset.to_string())
            .header("Upload-Complete", if complete { "?1" } else { "?0" })
            .body(body.to_vec())
    }

    /// An append whose connection is lost after `sent` of its bytes (raw HTTP/1.1).
    async fn cut_append(
        stack: &TestStack,
        location: &str,
        token: &str,
        offset: usize,
        body: &[u8],
        sent: usize,
    ) {
        let addr = stack.base.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Upload-Draft-Interop-Version: {VERSION}\r\nContent-Type: application/partial-upload\r\n\
             Upload-Offset: {offset}\r\nUpload-Complete: ?0\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&body[..sent]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(socket);
    }

    /// The offset once the cut-off append's bytes are committed (HEAD waits for a write in
    /// progress, which ends when the gateway sees the connection gone).
    async fn offset_after_cut(
        stack: &TestStack,
        location: &str,
        token: &str,
        before: usize,
    ) -> usize {
        for _ in 0..50 {
            let response = head(stack, location, token).await;
            let offset: usize = response.headers()["upload-offset"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            if offset > before {
                return offset;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cut-off append kept nothing");
    }

    async fn upload_through(
        stack: &TestStack,
        route: &Route,
        token: &str,
        bytes: &[u8],
    ) -> reqwest::Response {
        // OPTIONS says the route takes resumable uploads.
        let options = stack
            .http
            .request(reqwest::Method::OPTIONS, stack.url(route.path))
            .send()
            .await
            .unwrap();
        assert_eq!(options.status(), 204, "{}", route.path);
        assert!(
            options.headers()["accept-patch"]
                .to_str()
                .unwrap()
                .contains("application/partial-upload")
        );
        assert!(
            options.headers()["upload-limit"]
                .to_str()
                .unwrap()
                .contains("max-size=10485760")
        );
        let first = bytes.len() * 2 / 5;
        let mut create = stack
            .http
            .post(stack.url(route.path))
            .header("Authorization", format!("Bearer {token}"))
            .header("Upload-Draft-Interop-Version", VERSION)
            .header("Upload-Complete", "?0")
            .header("Upload-Length", bytes.len().to_string())
            .header("Content-Type", route.content_type)
            .body(bytes[..first].to_vec());
        if let Some(accept) = route.accept {
            create = create.header("Accept", accept);
        }
        let created = create.send().await.unwrap();
        assert_eq!(
            created.status(),
            201,
            "{}: {:?}",
            route.path,
            created.text().await
        );
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("/api/resumable/"), "{location}");
        assert!(
            created.headers()["upload-limit"]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
        let state = head(stack, &location, token).await;
        assert_eq!(state.status(), 204);
        assert_eq!(state.headers()["upload-offset"], first.to_string().as_str());
        assert_eq!(state.headers()["upload-complete"], "?0");
        assert_eq!(
            state.headers()["upload-length"],
            bytes.len().to_string().as_str()
        );
        assert_eq!(state.headers()["cache-control"], "no-store");
        // An append at another offset: 409 with the mismatching-offset problem.
        let wrong = append(
            stack,
            &location,
            token,
            first + 10,
            false,
            &bytes[first + 10..],
        )
        .send()
        .await
        .unwrap();
        assert_eq!(wrong.status(), 409);
        assert_eq!(wrong.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = wrong.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
        );
        assert_eq!(problem["expected-offset"], first);
        assert_eq!(problem["provided-offset"], first + 10);
        // An append cut off part-way keeps what arrived.
        let rest = &bytes[first..];
        cut_append(stack, &location, token, first, rest, rest.len() / 2).await;
        let offset = offset_after_cut(stack, &location, token, first).await;
        assert!(offset <= first + rest.len() / 2, "{offset}");
        // The last append, with a length that disagrees: 400, inconsistent length.
        let inconsistent = append(stack, &location, token, offset, true, &bytes[offset..])
            .header("Upload-Length", (bytes.len() + 1).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(inconsistent.status(), 400);
        let problem: serde_json::Value = inconsistent.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
        );
        let mut last = append(stack, &location, token, offset, true, &bytes[offset..]);
        if let Some(accept) = route.accept {
            last = last.header("Accept", accept);
        }
        let done = last.send().await.unwrap();
        assert_eq!(done.headers()["upload-complete"], "?1");
        // Nothing more can be appended: more bytes are an inconsistent length, none a
        // completed upload.
        let after = append(stack, &location, token, bytes.len(), true, b"x")
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), 400);
        let problem: serde_json::Value = after.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
        );
        let after = append(stack, &location, token, bytes.len(), true, b"")
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), 400);
        let problem: serde_json::Value = after.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://iana.org/assignments/http-problem-types#completed-upload"
        );
        let state = head(stack, &location, token).await;
        assert_eq!(state.headers()["upload-complete"], "?1");
        done
    }

    #[tokio::test]
    async fn a_draft_client_resumes_on_every_upload_route_and_gets_the_routes_answer() {
        let stack = spawn_stack_on(Stack::Real, |_| {}, |_| {}).await;
        let token = stack.token("u1", "w1", &[], &[]);
        let bytes = jpeg(200, 200);

        // Concur Image v1: 201 and the <Image> document.
        let route = Route {
            path: "/api/image/v1.0/receipt",
            accept: None,
            content_type: "image/jpeg",
        };
        let done = upload_through(&stack, &route, &token, &bytes).await;
        assert_eq!(done.status(), 201);
        let xml = done.text().await.unwrap();
        let id = xml
            .split("<Id>")
            .nth(1)
            .and_then(|rest| rest.split("</Id>").next())
            .unwrap()
            .to_owned();
        assert_stored(&stack, &token, &id, &bytes).await;

        // Receipt Image v3 asked for JSON: 201 and the item.
        let route = Route {
            path: "/api/v3.0/expense/receiptimages",
            accept: Some("application/json"),
            content_type: "image/jpeg",
        };
        let done = upload_through(&stack, &route, &token, &bytes).await;
        assert_eq!(done.status(), 201);
        let item: serde_json::Value = done.json().await.unwrap();
        let id = item["ID"].as_str().unwrap();
        assert_eq!(item["URI"], format!("/api/v3.0/expense/receiptimages/{id}"));

        // The workspace route: 201 and the image's JSON (stored as WebP).
        stack
            .register_target(v1::TargetKind::WorkspaceExpense, "exp-1", "w1", "u1")
            .await;
        let owner = stack.token("u1", "w1", &["owner"], &[]);
        let route = Route {
            path: "/api/v1/client/workspace/w1/expenses/exp-1/receipt",
            accept: None,
            content_type: "image/jpeg",
        };
        let done = upload_through(&stack, &route, &owner, &bytes).await;
        assert_eq!(done.status(), 201);
        let image: serde_json::Value = done.json().await.unwrap();
        assert_eq!(image["contentType"], "image/webp");
        assert!(image["url"].as_str().unwrap().starts_with("http"));
    }

    #[tokio::test]
    async fn a_cancelled_draft_upload_is_gone_and_a_refused_one_answers_in_the_routes_dialect() {
        let stack = spawn_stack_on(Stack::Embedded, |_| {}, |_| {}).await;
        let token = stack.token("u1", "w1", &[], &[]);
        let bytes = jpeg(64, 64);
        let create = |content_type: &'static str, body: Vec<u8>| {
            stack
                .http
                .post(stack.url("/api/image/v1.0/receipt"))
                .header("Authorization", format!("OAuth {token}"))
                .header("Upload-Draft-Interop-Version", VERSION)
                .header("Upload-Complete", "?0")
                .header("Content-Type", content_type)
                .body(body)
                .send()
        };
        let created = create("image/jpeg", bytes[..100].to_vec()).await.unwrap();
        assert_eq!(created.status(), 201);
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        let cancelled = stack
            .http
            .delete(stack.url(&location))
            .header("Authorization", format!("Bearer {token}"))
            .header("Upload-Draft-Interop-Version", VERSION)
            .send()
            .await
            .unwrap();
        assert_eq!(cancelled.status(), 204);
        assert_eq!(head(&stack, &location, &token).await.status(), 404);
        // Image v1 refuses other types at creation, as it does a one-shot upload.
        let gif = create("image/gif", b"GIF89a".to_vec()).await.unwrap();
        assert_eq!(gif.status(), 415);
        // A file that is not what it says: the completing append gets the route's <Error>.
        let mut broken = jpeg(64, 64);
        let len = broken.len();
        broken[len / 2..].fill(0);
        let created = create("image/jpeg", broken[..100].to_vec()).await.unwrap();
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        let done = append(&stack, &location, &token, 100, true, &broken[100..])
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 422);
        assert_eq!(done.headers()["upload-complete"], "?1");
        assert!(done.text().await.unwrap().contains("<Error>"));
        assert_eq!(stack.app.used("w1").await, 0);
    }
}
