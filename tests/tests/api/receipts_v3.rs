//! Concur Receipt Image v3 over HTTP against the real stack: every route in XML and in JSON,
//! paging that stays stable while receipts come and go, appends that make one PDF, deletes that
//! release the quota, acting for another user, and the error statuses.

use crate::helpers::{TestStack, spawn_stack, unescape, xml_text};
use imaging_e2e::fixtures::{
    OWNER_PASSWORD_PDF, assert_qpdf_accepts, jpeg, pdf, pdf_pages, pdfinfo_pages, png,
};
use reqwest::{Method, Response};
use serde_json::Value;

const BASE: &str = "/api/v3.0/expense/receiptimages";

/// A request body: its content type and bytes.
type Body<'a> = (&'a str, Vec<u8>);
const NS: &str = r#"xmlns="http://www.concursolutions.com/api/image/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance""#;

/// A request with a bearer token; `json` asks for JSON.
async fn call(
    stack: &TestStack,
    method: Method,
    path: &str,
    token: &str,
    json: bool,
    body: Option<Body<'_>>,
) -> Response {
    let mut request = stack
        .http
        .request(method, stack.url(path))
        .bearer_auth(token);
    if json {
        request = request.header("Accept", "application/json");
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("Content-Type", content_type).body(bytes);
    }
    request.send().await.unwrap()
}

/// Creates a receipt from raw bytes; its ID.
async fn create(stack: &TestStack, token: &str, bytes: Vec<u8>) -> String {
    let response = call(
        stack,
        Method::POST,
        BASE,
        token,
        true,
        Some(("image/png", bytes)),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["ID"].as_str().unwrap().to_owned()
}

/// Every ID of a list, following `NextPage` (JSON).
async fn list_all(stack: &TestStack, token: &str, first: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = first.to_owned();
    while !next.is_empty() {
        let response = call(stack, Method::GET, &next, token, true, None).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        ids.extend(
            page["Items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["ID"].as_str().unwrap().to_owned()),
        );
        next = page["NextPage"].as_str().unwrap().to_owned();
    }
    ids
}

#[tokio::test]
async fn every_route_answers_in_xml_and_in_json() {
    let stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let photo = jpeg(120, 80);

    // POST raw bytes, XML.
    let response = call(
        &stack,
        Method::POST,
        BASE,
        &token,
        false,
        Some(("image/jpeg", photo.clone())),
    )
    .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = response.text().await.unwrap();
    let id = xml_text(&body, "ID");
    assert_eq!(location, format!("{BASE}/{id}"));
    assert_eq!(
        body,
        format!("<ReceiptImage {NS}><ID>{id}</ID><URI>{BASE}/{id}</URI></ReceiptImage>")
    );

    // POST multipart, JSON.
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(png(40, 30))
            .file_name("scan.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let response = stack
        .http
        .post(stack.url(BASE))
        .bearer_auth(&token)
        .header("Accept", "application/json")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let item: Value = response.json().await.unwrap();
    let second = item["ID"].as_str().unwrap().to_owned();
    assert_eq!(item["URI"], format!("{BASE}/{second}"));

    // GET by ID: the v1 document, and its URL serves the bytes.
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}/{id}"),
        &token,
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.starts_with(&format!("<Image {NS}><Id>{id}</Id><Url>")),
        "{body}"
    );
    let url = unescape(&xml_text(&body, "Url"));
    assert_eq!(
        reqwest::get(&url).await.unwrap().bytes().await.unwrap(),
        photo
    );
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}/{id}"),
        &token,
        true,
        None,
    )
    .await;
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["Id"], id.as_str());
    assert!(doc["Url"].as_str().unwrap().starts_with("http"));

    // The list, XML then JSON: newest first.
    let response = call(&stack, Method::GET, BASE, &token, false, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!(
            "<ReceiptImages {NS}><Items><ReceiptImage><ID>{second}</ID><URI>{BASE}/{second}</URI></ReceiptImage>\
             <ReceiptImage><ID>{id}</ID><URI>{BASE}/{id}</URI></ReceiptImage></Items><NextPage /></ReceiptImages>"
        )
    );
    assert_eq!(
        list_all(&stack, &token, BASE).await,
        vec![second.clone(), id.clone()]
    );

    // PUT appends: JPEG, PNG and PDF onto the JPEG receipt make one PDF of every page.
    let added = jpeg(60, 90);
    for (kind, bytes, json) in [
        ("image/jpeg", added.clone(), false),
        ("image/png", png(30, 20), true),
        ("application/pdf", pdf(2), false),
    ] {
        let response = call(
            &stack,
            Method::PUT,
            &format!("{BASE}/{id}"),
            &token,
            json,
            Some((kind, bytes)),
        )
        .await;
        assert_eq!(response.status(), 200, "{kind}");
    }
    let stored = stack.image_bytes(&format!("{BASE}/{id}"), &token).await;
    assert_eq!(pdf_pages(&stored), 5);
    assert_eq!(pdfinfo_pages(&stored), 5);
    assert_qpdf_accepts(&stored);
    let find = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    assert!(
        find(&photo) && find(&added),
        "the JPEG pages embed the uploaded bytes"
    );

    // DELETE: 204, then 404, and the bytes are released.
    let used = stack.used("w1").await;
    let response = call(
        &stack,
        Method::DELETE,
        &format!("{BASE}/{id}"),
        &token,
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(stack.used("w1").await, used - stored.len() as u64);
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}/{id}"),
        &token,
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 404);
    let response = call(
        &stack,
        Method::DELETE,
        &format!("{BASE}/{id}"),
        &token,
        true,
        None,
    )
    .await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["Message"].is_string() && error["Server-Time"].is_string() && error["Id"].is_string()
    );
    assert_eq!(list_all(&stack, &token, BASE).await, vec![second]);
}

#[tokio::test]
async fn sixty_receipts_page_by_25_with_no_duplicate_and_no_skip_while_the_list_changes() {
    let stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(create(&stack, &token, png(8 + n, 8)).await);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(
        list_all(&stack, &token, &format!("{BASE}?limit=25")).await,
        newest_first
    );

    // Page by page, with an upload and a deletion in between.
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}?limit=25"),
        &token,
        true,
        None,
    )
    .await;
    let first: Value = response.json().await.unwrap();
    assert_eq!(first["Items"].as_array().unwrap().len(), 25);
    let added = create(&stack, &token, png(99, 9)).await;
    let deleted = newest_first[30].clone();
    let response = call(
        &stack,
        Method::DELETE,
        &format!("{BASE}/{deleted}"),
        &token,
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    let rest = list_all(&stack, &token, first["NextPage"].as_str().unwrap()).await;
    let expected: Vec<String> = newest_first[25..]
        .iter()
        .filter(|id| **id != deleted)
        .cloned()
        .collect();
    assert_eq!(rest, expected);
    assert!(!rest.contains(&added));
}

#[tokio::test]
async fn an_admin_acts_for_another_user_and_nobody_else_may() {
    let stack = spawn_stack().await;
    let user = stack.token("u1", "w1", &[], &[]);
    let own = create(&stack, &user, png(9, 9)).await;
    let admin = stack.token("boss", "w1", &["web_services_admin"], &[]);
    let peer = stack.token("u2", "w1", &[], &[]);

    let response = call(
        &stack,
        Method::POST,
        &format!("{BASE}?user=u1"),
        &admin,
        true,
        Some(("image/png", png(10, 10))),
    )
    .await;
    assert_eq!(response.status(), 201);
    let made: Value = response.json().await.unwrap();
    let made = made["ID"].as_str().unwrap().to_owned();
    assert_eq!(
        list_all(&stack, &user, BASE).await,
        vec![made.clone(), own.clone()]
    );
    assert_eq!(
        list_all(&stack, &admin, &format!("{BASE}?user=u1&limit=1")).await,
        vec![made.clone(), own.clone()]
    );
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}/{own}?user=u1"),
        &admin,
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    // An image of another user than the one named is not found.
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}/{own}?user=u2"),
        &admin,
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 404);

    for (method, path) in [
        (Method::GET, format!("{BASE}?user=u1")),
        (Method::GET, format!("{BASE}/{own}?user=u1")),
        (Method::DELETE, format!("{BASE}/{own}?user=u1")),
        (Method::POST, format!("{BASE}?user=u1")),
    ] {
        let body = (method == Method::POST).then(|| ("image/png", png(9, 9)));
        let response = call(&stack, method.clone(), &path, &peer, false, body).await;
        assert_eq!(response.status(), 403, "{method} {path}");
    }
    // Without `user`, another user's image is still not theirs.
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}/{own}"),
        &peer,
        false,
        None,
    )
    .await;
    assert_eq!(response.status(), 403);
    let response = call(
        &stack,
        Method::PUT,
        &format!("{BASE}/{own}"),
        &peer,
        false,
        Some(("image/png", png(9, 9))),
    )
    .await;
    assert_eq!(response.status(), 403);
    // Another workspace never sees it.
    let outsider = stack.token("u1", "w2", &["company_admin"], &[]);
    let response = call(
        &stack,
        Method::GET,
        &format!("{BASE}/{own}"),
        &outsider,
        true,
        None,
    )
    .await;
    assert_eq!(response.status(), 404);
    assert!(
        list_all(&stack, &outsider, &format!("{BASE}?user=u1"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn every_error_status_of_the_contract() {
    let mut stack = spawn_stack().await;
    let token = stack.token("u1", "w1", &[], &[]);
    let id = create(&stack, &token, png(9, 9)).await;
    let cases: Vec<(Method, String, Option<Body>, u16)> = vec![
        (Method::GET, format!("{BASE}?limit=0"), None, 400),
        (Method::GET, format!("{BASE}?limit=101"), None, 400),
        (Method::GET, format!("{BASE}?limit=ten"), None, 400),
        (
            Method::GET,
            format!("{BASE}?offset=not-a-cursor"),
            None,
            400,
        ),
        (Method::GET, format!("{BASE}/bad%20id"), None, 400),
        (Method::GET, format!("{BASE}/nosuchimage"), None, 404),
        (
            Method::POST,
            BASE.to_owned(),
            Some(("image/png", vec![0u8; 10_485_761])),
            413,
        ),
        (
            Method::POST,
            BASE.to_owned(),
            Some(("text/plain", b"hello".to_vec())),
            415,
        ),
        (
            Method::POST,
            BASE.to_owned(),
            Some(("image/png", jpeg(10, 10))),
            422,
        ),
        (
            Method::POST,
            BASE.to_owned(),
            Some(("application/pdf", OWNER_PASSWORD_PDF.to_vec())),
            422,
        ),
        (
            Method::PUT,
            format!("{BASE}/{id}"),
            Some(("image/png", b"not a png".to_vec())),
            422,
        ),
    ];
    for (method, path, body, status) in cases {
        for json in [false, true] {
            let response = call(&stack, method.clone(), &path, &token, json, body.clone()).await;
            assert_eq!(
                response.status().as_u16(),
                status,
                "{method} {path} json={json}"
            );
            let text = response.text().await.unwrap();
            if json {
                let error: Value = serde_json::from_str(&text).unwrap();
                assert!(error["Message"].is_string(), "{text}");
            } else {
                assert!(text.starts_with("<Error><Message>"), "{text}");
            }
        }
    }
    let response = stack.http.get(stack.url(BASE)).send().await.unwrap();
    assert_eq!(response.status(), 401);

    // Quota full: 507; the receipt is unchanged.
    stack
        .register_workspace("w1", stack.used("w1").await + 10)
        .await;
    let response = call(
        &stack,
        Method::POST,
        BASE,
        &token,
        false,
        Some(("image/png", png(30, 30))),
    )
    .await;
    assert_eq!(response.status(), 507);
    let response = call(
        &stack,
        Method::PUT,
        &format!("{BASE}/{id}"),
        &token,
        true,
        Some(("image/png", png(30, 30))),
    )
    .await;
    assert_eq!(response.status(), 507);

    // Redis down: 503 with Retry-After, no internals.
    stack.app.redis.as_mut().unwrap().stop();
    let response = call(&stack, Method::GET, BASE, &token, true, None).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("redis"),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_v3_routes() {
    let stack = spawn_stack().await;
    let doc: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];
    for method in ["get", "post"] {
        assert!(paths[BASE][method].is_object(), "{method} {BASE}");
    }
    for method in ["get", "put", "delete"] {
        assert!(
            paths[format!("{BASE}/{{id}}")][method].is_object(),
            "{method}"
        );
    }
}
