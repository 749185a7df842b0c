//! Workspace receipts over HTTP: multipart in, JSON out, WebP stored, replace, delete, summary.

use crate::helpers::spawn_stack;
use imaging_e2e::fixtures::{jpeg, pdf, png};
use imaging_proto::v1::TargetKind;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const PATH: &str = "/api/v1/client/workspace/w1/expenses/exp-1/receipt";

fn form(bytes: Vec<u8>, mime: &str, name: &str) -> Form {
    Form::new().text("note", "ignored").part(
        "file",
        Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(mime)
            .unwrap(),
    )
}

#[tokio::test]
async fn a_multipart_upload_is_stored_as_webp_and_replaced_by_the_next_one() {
    let stack = spawn_stack().await;
    stack.register_workspace("w1", 0).await;
    stack
        .register_target(TargetKind::WorkspaceExpense, "exp-1", "w1", "u1")
        .await;
    let token = stack.token("u2", "w1", &["staff"], &["financial"]);

    let response = stack
        .http
        .post(stack.url(PATH))
        .bearer_auth(&token)
        .multipart(form(jpeg(3000, 1000), "image/jpeg", "r.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["contentType"], "image/webp");
    assert_eq!(first["width"], 2048);
    let path = first["path"].as_str().unwrap().to_owned();
    assert!(
        path.starts_with("ws/w1/workspace-expenses/exp-1/receipt-") && path.ends_with(".webp"),
        "{path}"
    );
    let stored = reqwest::get(first["url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored.len() as u64, first["sizeBytes"].as_u64().unwrap());
    let decoded = image::load_from_memory_with_format(&stored, image::ImageFormat::WebP).unwrap();
    assert_eq!(
        (u64::from(decoded.width()), u64::from(decoded.height())),
        (2048, first["height"].as_u64().unwrap())
    );

    let current: Value = stack.get(PATH, &token).await.json().await.unwrap();
    assert_eq!(current["path"], first["path"]);

    let response = stack
        .http
        .post(stack.url(PATH))
        .bearer_auth(&token)
        .multipart(form(png(300, 200), "image/png", "r.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let second: Value = response.json().await.unwrap();
    assert_eq!(
        (second["width"].as_u64(), second["height"].as_u64()),
        (Some(300), Some(200))
    );
    let objects = stack.objects().await;
    assert_eq!(objects.len(), 1, "the replaced image is gone");
    assert_eq!(
        stack.used("w1").await,
        second["sizeBytes"].as_u64().unwrap()
    );

    let summary: Value = stack
        .get("/api/v1/workspace/w1/storage/summary", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(summary["totalSizeBytes"], second["sizeBytes"]);
    assert_eq!(summary["quotaBytes"].as_u64(), Some(1_073_741_824));
    assert!(summary["usagePercentage"].as_f64().unwrap() >= 0.0);

    let deleted = stack
        .http
        .delete(stack.url(PATH))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(stack.objects().await.is_empty());
    assert_eq!(stack.used("w1").await, 0);
    assert_eq!(stack.get(PATH, &token).await.status(), 404);
}

#[tokio::test]
async fn every_workspace_error_has_its_status_and_a_json_code() {
    let stack = spawn_stack().await;
    stack.register_workspace("w1", 0).await;
    stack
        .register_target(TargetKind::WorkspaceExpense, "exp-1", "w1", "u1")
        .await;
    let owner = stack.token("u1", "w1", &["owner"], &[]);
    let staff = stack.token("u2", "w1", &["staff"], &[]);
    // (what, path, token, form, expected status, expected code or "" for any)
    type Case<'a> = (&'a str, String, Option<&'a str>, Form, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no file field",
            PATH.into(),
            Some(&owner),
            Form::new().text("other", "x"),
            400,
            "",
        ),
        (
            "bad id",
            "/api/v1/client/workspace/w1/expenses/bad.id/receipt".into(),
            Some(&owner),
            form(png(8, 8), "image/png", "a.png"),
            400,
            "",
        ),
        (
            "no token",
            PATH.into(),
            None,
            form(png(8, 8), "image/png", "a.png"),
            401,
            "",
        ),
        (
            "staff without financial",
            PATH.into(),
            Some(&staff),
            form(png(8, 8), "image/png", "a.png"),
            403,
            "PERMISSION_DENIED",
        ),
        (
            "unknown expense",
            "/api/v1/client/workspace/w1/expenses/nope/receipt".into(),
            Some(&owner),
            form(png(8, 8), "image/png", "a.png"),
            404,
            "TARGET_NOT_FOUND",
        ),
        (
            "pdf not accepted",
            PATH.into(),
            Some(&owner),
            form(pdf(1), "application/pdf", "a.pdf"),
            422,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "corrupt",
            PATH.into(),
            Some(&owner),
            form(jpeg(50, 50)[..200].to_vec(), "image/jpeg", "a.jpg"),
            422,
            "CORRUPT_IMAGE",
        ),
        (
            "mismatch",
            PATH.into(),
            Some(&owner),
            form(png(8, 8), "image/jpeg", "a.jpg"),
            422,
            "CONTENT_TYPE_MISMATCH",
        ),
    ];
    for (what, path, token, body, status, code) in cases {
        let mut request = stack.http.post(stack.url(&path)).multipart(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let json: Value = response.json().await.unwrap();
        assert!(json["message"].is_string(), "{what}: {json}");
        if !code.is_empty() {
            assert_eq!(json["code"], code, "{what}");
        }
    }
    assert!(stack.objects().await.is_empty());

    stack.register_workspace("tiny", 10).await;
    stack
        .register_target(TargetKind::WorkspaceExpense, "e", "tiny", "u1")
        .await;
    let tiny_owner = stack.token("u1", "tiny", &["owner"], &[]);
    let response = stack
        .http
        .post(stack.url("/api/v1/client/workspace/tiny/expenses/e/receipt"))
        .bearer_auth(&tiny_owner)
        .multipart(form(png(64, 64), "image/png", "a.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 507);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["code"], "QUOTA_EXCEEDED");
}

#[tokio::test]
async fn a_too_large_file_is_413_and_an_unreachable_redis_is_503_both_as_json() {
    let mut stack = spawn_stack().await;
    stack.register_workspace("w1", 0).await;
    stack
        .register_target(TargetKind::WorkspaceExpense, "exp-1", "w1", "u1")
        .await;
    let owner = stack.token("u1", "w1", &["owner"], &[]);

    // A valid JPEG padded past 10 MB, in a multipart form.
    let mut big = jpeg(64, 64);
    big.resize(10 * 1024 * 1024 + 1, 0);
    let response = stack
        .http
        .post(stack.url(PATH))
        .bearer_auth(&owner)
        .multipart(form(big, "image/jpeg", "big.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["code"], "FILE_TOO_LARGE");
    assert!(stack.objects().await.is_empty());
    assert_eq!(stack.used("w1").await, 0);

    stack.app.redis.as_mut().unwrap().stop();
    let response = stack
        .http
        .post(stack.url(PATH))
        .bearer_auth(&owner)
        .multipart(form(jpeg(32, 32), "image/jpeg", "a.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body = response.text().await.unwrap();
    let json: Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["code"].is_string() && json["message"].is_string(),
        "{json}"
    );
    assert!(
        !body.contains("127.0.0.1") && !body.to_lowercase().contains("redis"),
        "no internals leak: {body}"
    );
}
