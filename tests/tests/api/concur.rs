//! Concur Image v1 over HTTP: exact XML, every error status, bytes back through the URL.

use crate::helpers::{spawn_stack, unescape, xml_text};
use imaging_e2e::fixtures::{
    OWNER_PASSWORD_PDF, USER_PASSWORD_PDF, jpeg, pdf, pdf_pages, png, png_bomb,
};
use imaging_proto::v1::TargetKind;

const NS: &str = r#"xmlns="http://www.concursolutions.com/api/image/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance""#;

fn posted(id: &str) -> String {
    format!("<Image {NS}><Id>{id}</Id><Url /></Image>")
}

#[tokio::test]
async fn a_receipt_posted_as_raw_bytes_comes_back_byte_for_byte_through_its_url() {
    let stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let bytes = jpeg(320, 240);
    let response = stack
        .post_raw(
            "/api/image/v1.0/receipt",
            &token,
            "image/jpeg",
            bytes.clone(),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );
    let body = response.text().await.unwrap();
    let id = xml_text(&body, "Id");
    assert_eq!(body, posted(&id), "exact Concur XML");
    assert_eq!(id.len(), 32);

    let response = stack
        .get(&format!("/api/image/v1.0/receipt/{id}"), &token)
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let url = unescape(&xml_text(&body, "Url"));
    assert!(
        body.starts_with(&format!("<Image {NS}><Id>{id}</Id><Url>")),
        "{body}"
    );
    let fetched = reqwest::get(&url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), bytes);
}

#[tokio::test]
async fn entries_invoices_and_reports_answer_with_their_own_ids_under_both_versions() {
    let stack = spawn_stack().await;
    stack.register_workspace("w1", 0).await;
    stack
        .register_target(TargetKind::ExpenseEntry, "A2C40CEE415B43B2A0BE", "w1", "u1")
        .await;
    stack
        .register_target(TargetKind::Invoice, "884E2WRE415B43B2A0BE", "w1", "u1")
        .await;
    stack
        .register_target(TargetKind::Report, "R1", "w1", "u1")
        .await;
    let token = stack.token("u1", "w1", &[], &[]);

    let entry = stack
        .post_raw(
            "/api/image/v1.0/expenseentry/A2C40CEE415B43B2A0BE",
            &token,
            "application/pdf",
            pdf(1),
        )
        .await;
    assert_eq!(entry.status(), 201);
    assert_eq!(entry.text().await.unwrap(), posted("A2C40CEE415B43B2A0BE"));
    let invoice = stack
        .post_raw(
            "/api/image/v1.1/invoice/884E2WRE415B43B2A0BE",
            &token,
            "image/jpg",
            jpeg(10, 10),
        )
        .await;
    assert_eq!(invoice.status(), 201);
    assert_eq!(
        invoice.text().await.unwrap(),
        posted("884E2WRE415B43B2A0BE")
    );

    // A report built from a JPEG, a PNG and a 2-page PDF holds all four pages.
    for (kind, bytes) in [
        ("image/jpeg", jpeg(60, 40)),
        ("image/png", png(40, 60)),
        ("application/pdf", pdf(2)),
    ] {
        let report = stack
            .post_raw("/api/image/v1.0/report/R1", &token, kind, bytes)
            .await;
        assert_eq!(report.status(), 201);
        assert_eq!(report.text().await.unwrap(), posted("R1"));
    }
    let stored = stack.image_bytes("/api/image/v1.1/report/R1", &token).await;
    assert_eq!(pdf_pages(&stored), 4);

    let again = stack
        .post_raw(
            "/api/image/v1.0/expenseentry/A2C40CEE415B43B2A0BE",
            &token,
            "application/pdf",
            pdf(1),
        )
        .await;
    assert_eq!(again.status(), 409);
    let body = again.text().await.unwrap();
    assert!(body.starts_with("<Error><Message>"), "{body}");
    assert!(!xml_text(&body, "Server-Time").is_empty());
    assert!(!xml_text(&body, "Id").is_empty());
}

#[tokio::test]
async fn every_concur_error_has_its_status_and_an_xml_body() {
    let stack = spawn_stack().await;
    stack.register_workspace("w1", 2_000).await;
    stack.register_workspace("w2", 0).await;
    stack
        .register_target(TargetKind::ExpenseEntry, "E1", "w1", "u1")
        .await;
    let token = stack.token("u1", "w1", &[], &[]);
    let cases: Vec<(&str, String, &str, Vec<u8>, u16)> = vec![
        (
            "bad id",
            "/api/image/v1.0/expenseentry/bad.id".into(),
            "image/png",
            png(8, 8),
            400,
        ),
        (
            "empty body",
            "/api/image/v1.0/receipt".into(),
            "image/png",
            vec![],
            400,
        ),
        (
            "no token",
            "/api/image/v1.0/receipt".into(),
            "image/png",
            png(8, 8),
            401,
        ),
        (
            "unknown entry",
            "/api/image/v1.0/expenseentry/NOPE".into(),
            "image/png",
            png(8, 8),
            404,
        ),
        (
            "gif",
            "/api/image/v1.0/receipt".into(),
            "image/gif",
            b"GIF89a....".to_vec(),
            415,
        ),
        (
            "mismatch",
            "/api/image/v1.0/receipt".into(),
            "image/jpeg",
            png(8, 8),
            422,
        ),
        (
            "corrupt",
            "/api/image/v1.0/receipt".into(),
            "image/jpeg",
            jpeg(100, 100)[..300].to_vec(),
            422,
        ),
        (
            "bomb",
            "/api/image/v1.0/receipt".into(),
            "image/png",
            png_bomb(),
            422,
        ),
        (
            "user-password pdf",
            "/api/image/v1.0/receipt".into(),
            "application/pdf",
            USER_PASSWORD_PDF.to_vec(),
            422,
        ),
        (
            "owner-password pdf",
            "/api/image/v1.0/receipt".into(),
            "application/pdf",
            OWNER_PASSWORD_PDF.to_vec(),
            422,
        ),
        (
            "over quota",
            "/api/image/v1.0/receipt".into(),
            "image/jpeg",
            jpeg(200, 200),
            507,
        ),
    ];
    for (what, path, content_type, body, status) in cases {
        let mut request = stack
            .http
            .post(stack.url(&path))
            .header("Content-Type", content_type)
            .body(body);
        if what != "no token" {
            request = request.header("Authorization", format!("OAuth {token}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains("<Error><Message>") && text.contains("<Server-Time>"),
            "{what}: {text}"
        );
    }
    let other = stack.token("u2", "w2", &["company_admin"], &[]);
    let forbidden = stack
        .post_raw(
            "/api/image/v1.0/expenseentry/E1",
            &other,
            "image/png",
            png(8, 8),
        )
        .await;
    assert_eq!(forbidden.status(), 403);
    let missing = stack.get("/api/image/v1.0/expenseentry/E1", &token).await;
    assert_eq!(missing.status(), 404, "no image yet");
    let expired = stack.token_expiring("u1", "w1", &[], &[], -100);
    assert_eq!(
        stack
            .post_raw("/api/image/v1.0/receipt", &expired, "image/png", png(8, 8))
            .await
            .status(),
        401
    );
    assert!(
        stack.objects().await.is_empty(),
        "nothing stored by any refused upload"
    );
    assert_eq!(stack.used("w1").await, 0);
}

#[tokio::test]
async fn uploads_are_refused_with_503_while_redis_is_down() {
    let mut stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    stack.app.redis.as_mut().unwrap().stop();
    let response = stack
        .post_raw("/api/image/v1.0/receipt", &token, "image/png", png(8, 8))
        .await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("127.0.0.1") && !body.contains("redis"),
        "no internals leak: {body}"
    );
}

#[tokio::test]
async fn a_retried_upload_with_its_idempotency_key_is_201_with_the_same_id_when_the_quota_is_full()
{
    let stack = spawn_stack().await;
    let bytes = jpeg(64, 48);
    stack.register_workspace("w1", bytes.len() as u64).await;
    let token = stack.token("u1", "w1", &[], &[]);
    let post = || {
        stack
            .http
            .post(stack.url("/api/image/v1.0/receipt"))
            .header("Authorization", format!("OAuth {token}"))
            .header("Content-Type", "image/jpeg")
            .header("Idempotency-Key", "retry-1")
            .body(bytes.clone())
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 201);
    let first = first.text().await.unwrap();
    let again = post().await.unwrap();
    assert_eq!(again.status(), 201, "not 507: the retry is a replay");
    assert_eq!(
        xml_text(&again.text().await.unwrap(), "Id"),
        xml_text(&first, "Id")
    );
    assert_eq!(stack.objects().await.len(), 1);
    assert_eq!(stack.used("w1").await, bytes.len() as u64);
}

#[tokio::test]
async fn a_report_append_past_the_page_bound_is_413_and_leaves_the_report_as_it_was() {
    let stack = crate::helpers::spawn_stack_with(|settings| {
        settings.limits.report.max_pages = 2;
    })
    .await;
    stack
        .register_target(TargetKind::Report, "R1", "w1", "u1")
        .await;
    let token = stack.token("u1", "w1", &[], &[]);
    let first = stack
        .post_raw(
            "/api/image/v1.0/report/R1",
            &token,
            "application/pdf",
            pdf(2),
        )
        .await;
    assert_eq!(first.status(), 201);
    let used = stack.used("w1").await;
    let refused = stack
        .post_raw(
            "/api/image/v1.0/report/R1",
            &token,
            "image/jpeg",
            jpeg(60, 40),
        )
        .await;
    assert_eq!(refused.status(), 413);
    let body = refused.text().await.unwrap();
    assert!(body.starts_with("<Error><Message>"), "{body}");
    assert_eq!(stack.used("w1").await, used);
    let stored = stack.image_bytes("/api/image/v1.0/report/R1", &token).await;
    assert_eq!(pdf_pages(&stored), 2);
}
