//! Camera and scanner formats through the gateway, per dialect, on the embedded default and on
//! S3 + Redis: Receipt Image v3 stores HEIC as JPEG and TIFF as PDF and appends GIF pages,
//! the workspace route converts HEIC and GIF to WebP, and Image v1 keeps its three documented
//! types (415 for the rest). Stored bytes are read back through the expiring URL and checked
//! with readers this project did not write.

use crate::helpers::{Stack, TestStack, spawn_stack_on, xml_text};
use imaging_e2e::fixtures::{
    GIF_ANIMATED, GIF_TRANSPARENT, HEIC_PLAIN, HEIC_ROTATED, TIFF_G3, TIFF_G4, assert_qpdf_accepts,
    pdfinfo_pages, pillow_reads,
};
use imaging_proto::v1::TargetKind;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const V3: &str = "/api/v3.0/expense/receiptimages";

async fn fetch(url: &str) -> Vec<u8> {
    reqwest::get(url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// The bytes behind a v3 receipt (JSON metadata, then its URI).
async fn v3_bytes(stack: &TestStack, token: &str, id: &str) -> (Value, Vec<u8>) {
    let response = stack
        .http
        .get(stack.url(&format!("{V3}/{id}")))
        .bearer_auth(token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let item: Value = response.json().await.unwrap();
    let bytes = fetch(item["Url"].as_str().unwrap()).await;
    (item, bytes)
}

async fn receipt_image_v3(stack: &TestStack) {
    let token = stack.token("u1", "w1", &[], &[]);
    // Raw HEIC: stored as a JPEG of the upright photo.
    let response = stack
        .http
        .post(stack.url(V3))
        .bearer_auth(&token)
        .header("Accept", "application/json")
        .header("Content-Type", "image/heic")
        .body(HEIC_ROTATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let heic_id = created["ID"].as_str().unwrap().to_owned();
    let (_, bytes) = v3_bytes(stack, &token, &heic_id).await;
    assert_eq!(pillow_reads(&bytes), "JPEG 480 640");
    let mut charged = bytes.len() as u64;
    assert_eq!(stack.used("w1").await, charged);

    // Multipart TIFF (type guessed from the part's name): one PDF of three pages.
    let form = Form::new().part(
        "image",
        Part::bytes(TIFF_G4.to_vec())
            .file_name("scan.tiff")
            .mime_str("application/octet-stream")
            .unwrap(),
    );
    let response = stack
        .http
        .post(stack.url(V3))
        .bearer_auth(&token)
        .header("Accept", "application/json")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let created: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{created}");
    let tiff_id = created["ID"].as_str().unwrap().to_owned();
    let (_, pdf) = v3_bytes(stack, &token, &tiff_id).await;
    assert_qpdf_accepts(&pdf);
    assert_eq!(pdfinfo_pages(&pdf), 3);
    charged += pdf.len() as u64;
    assert_eq!(stack.used("w1").await, charged);

    // A GIF appended to the TIFF's receipt: four pages.
    let response = stack
        .http
        .put(stack.url(&format!("{V3}/{tiff_id}")))
        .bearer_auth(&token)
        .header("Content-Type", "image/gif")
        .body(GIF_ANIMATED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let (_, pdf) = v3_bytes(stack, &token, &tiff_id).await;
    assert_qpdf_accepts(&pdf);
    assert_eq!(pdfinfo_pages(&pdf), 4);

    // Declared HEIC, sent JPEG bytes: 422 in the v3 JSON dialect, nothing stored.
    let before = stack.objects().await.len();
    let response = stack
        .http
        .post(stack.url(V3))
        .bearer_auth(&token)
        .header("Accept", "application/json")
        .header("Content-Type", "image/heic")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(stack.objects().await.len(), before);
}

async fn image_v1_keeps_its_three_types(stack: &TestStack) {
    let token = stack.token("u1", "w1", &[], &[]);
    for (content_type, bytes) in [
        ("image/heic", HEIC_PLAIN),
        ("image/tiff", TIFF_G3),
        ("image/gif", GIF_TRANSPARENT),
    ] {
        let response = stack
            .post_raw(
                "/api/image/v1.0/receipt",
                &token,
                content_type,
                bytes.to_vec(),
            )
            .await;
        assert_eq!(response.status(), 415, "{content_type}");
        let body = response.text().await.unwrap();
        assert!(xml_text(&body, "Message").contains("v3"), "{body}");
    }
    assert!(stack.objects().await.is_empty());
    // Without a token the service's answer comes first.
    let response = stack
        .http
        .post(stack.url("/api/image/v1.0/receipt"))
        .header("Content-Type", "image/heic")
        .body(HEIC_PLAIN.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

async fn workspace_route_converts_heic_and_gif_to_webp(stack: &TestStack) {
    stack.register_workspace("w9", 0).await;
    stack
        .register_target(TargetKind::WorkspaceExpense, "exp-1", "w9", "u1")
        .await;
    let token = stack.token("u2", "w9", &["staff"], &["financial"]);
    let path = "/api/v1/client/workspace/w9/expenses/exp-1/receipt";
    for (bytes, mime, name, size) in [
        (HEIC_ROTATED, "image/heic", "photo.heic", "480 640"),
        (GIF_TRANSPARENT, "image/gif", "x.gif", "120 90"),
    ] {
        let form = Form::new().part(
            "file",
            Part::bytes(bytes.to_vec())
                .file_name(name)
                .mime_str(mime)
                .unwrap(),
        );
        let response = stack
            .http
            .post(stack.url(path))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{mime}");
        let stored: Value = response.json().await.unwrap();
        assert_eq!(stored["contentType"], "image/webp");
        let webp = fetch(stored["url"].as_str().unwrap()).await;
        assert_eq!(pillow_reads(&webp), format!("WEBP {size}"));
        assert_eq!(stack.used("w9").await, webp.len() as u64);
    }
}

async fn embedded() -> TestStack {
    spawn_stack_on(Stack::Embedded, |_| {}, |_| {}).await
}

async fn real() -> TestStack {
    spawn_stack_on(Stack::Real, |_| {}, |_| {}).await
}

#[tokio::test]
async fn receipt_image_v3_on_the_embedded_default() {
    receipt_image_v3(&embedded().await).await;
}

#[tokio::test]
async fn receipt_image_v3_on_s3_and_redis() {
    receipt_image_v3(&real().await).await;
}

#[tokio::test]
async fn image_v1_keeps_its_three_types_on_the_embedded_default() {
    image_v1_keeps_its_three_types(&embedded().await).await;
}

#[tokio::test]
async fn image_v1_keeps_its_three_types_on_s3_and_redis() {
    image_v1_keeps_its_three_types(&real().await).await;
}

#[tokio::test]
async fn the_workspace_route_converts_heic_and_gif_on_the_embedded_default() {
    workspace_route_converts_heic_and_gif_to_webp(&embedded().await).await;
}

#[tokio::test]
async fn the_workspace_route_converts_heic_and_gif_on_s3_and_redis() {
    workspace_route_converts_heic_and_gif_to_webp(&real().await).await;
}
