//! The router driven in-process with `oneshot`, its ingest channel pointing at a port where
//! nothing listens: enough for every answer the gateway gives without the ingest service.

use crate::configuration::Settings;
use crate::startup::app;
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A URL where nothing listens: a port bound and released.
fn unused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn router() -> Router {
    let settings = Settings::for_ingest(unused_url());
    app(AppState::from_settings(&settings).unwrap())
}

async fn send(request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let response: Response = router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

const EVERY_ROUTE: &[(&str, &str)] = &[
    ("post", "/api/image/{version}/receipt"),
    ("get", "/api/image/{version}/receipt/{imageId}"),
    ("post", "/api/image/{version}/expenseentry/{entryId}"),
    ("get", "/api/image/{version}/expenseentry/{entryId}"),
    ("post", "/api/image/{version}/invoice/{requestId}"),
    ("get", "/api/image/{version}/invoice/{requestId}"),
    ("post", "/api/image/{version}/report/{reportId}"),
    ("get", "/api/image/{version}/report/{reportId}"),
    (
        "post",
        "/api/v1/client/workspace/{workspaceId}/expenses/{expenseId}/receipt",
    ),
    (
        "get",
        "/api/v1/client/workspace/{workspaceId}/expenses/{expenseId}/receipt",
    ),
    (
        "delete",
        "/api/v1/client/workspace/{workspaceId}/expenses/{expenseId}/receipt",
    ),
    ("get", "/api/v1/workspace/{workspaceId}/storage/summary"),
    ("get", "/api/v3.0/expense/receiptimages"),
    ("post", "/api/v3.0/expense/receiptimages"),
    ("get", "/api/v3.0/expense/receiptimages/{id}"),
    ("put", "/api/v3.0/expense/receiptimages/{id}"),
    ("delete", "/api/v3.0/expense/receiptimages/{id}"),
    ("get", "/receipts/"),
    ("post", "/receipts/v4/users/{userId}/image-only-receipts"),
    ("get", "/receipts/v4/users/{userId}/image-only-receipts"),
    ("get", "/receipts/v4/status/{id}"),
    ("get", "/receipts/v4/image-only-receipts/{id}"),
    ("get", "/receipts/v4/image-only-receipts/{id}/image"),
    ("get", "/receipts/v4/images/{id}"),
    ("post", "/api/uploads/"),
    ("patch", "/api/uploads/{id}"),
    ("delete", "/api/uploads/{id}"),
    ("patch", "/api/resumable/{id}"),
    ("delete", "/api/resumable/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_lists_the_types_each_upload_route_takes() {
    let (_, _, body) = send(get("/openapi.json")).await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let types = |path: &str, method: &str| -> Vec<String> {
        let mut types: Vec<String> = doc["paths"][path][method]["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        types.sort();
        types
    };
    for (path, method) in [
        ("/api/v3.0/expense/receiptimages", "post"),
        ("/api/v3.0/expense/receiptimages/{id}", "put"),
    ] {
        let listed = types(path, method);
        for media in [
            "image/heic",
            "image/heif",
            "image/tiff",
            "image/gif",
            "image/png",
        ] {
            assert!(listed.contains(&media.to_owned()), "{path} {media}");
        }
    }
    let v1 = types("/api/image/{version}/receipt", "post");
    assert_eq!(
        v1,
        ["application/pdf", "image/jpeg", "image/jpg", "image/png"]
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_nothing_else() {
    let (status, headers, body) = send(get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    let mut listed: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|key| ["get", "post", "put", "delete", "patch"].contains(&key.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String)> = EVERY_ROUTE
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "ErrorBody",
        "ReceiptImage",
        "StorageSummary",
        "ReceiptImageItem",
        "ReceiptImagesPage",
        "ImageDocument",
        "ServiceIndex",
        "ProcessingStatusDocument",
        "ReceiptImagesList",
    ] {
        assert!(schemas.contains_key(schema), "{schema}");
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    for (method, path) in EVERY_ROUTE {
        let uri = path.replace("{version}", "v1.0").replace(['{', '}'], "");
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = send(request).await;
        assert_ne!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
    }
}

#[tokio::test]
async fn healthz_answers_ok_while_readyz_fails_without_the_ingest_service() {
    let (status, _, body) = send(get("/healthz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, _) = send(get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_unknown_concur_version_is_an_xml_404() {
    for request in [
        get("/api/image/v2.0/receipt/abc"),
        Request::post("/api/image/v1.2/receipt")
            .body(Body::from("x"))
            .unwrap(),
    ] {
        let (status, headers, body) = send(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[header::CONTENT_TYPE], "application/xml");
        assert!(body.starts_with("<Error><Message>"), "{body}");
    }
}

#[tokio::test]
async fn a_malformed_path_id_is_refused_before_any_grpc_call() {
    // Were the ingest service called, the unreachable channel would make these 503s.
    let long = "a".repeat(129);
    for uri in [
        "/api/image/v1.0/expenseentry/bad.id".to_owned(),
        format!("/api/image/v1.1/report/{long}"),
        "/api/image/v1.0/invoice/a%20b".to_owned(),
    ] {
        let request = Request::post(&uri).body(Body::from("x")).unwrap();
        let (status, headers, body) = send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/xml");
        assert!(body.contains("<Id>"), "{body}");
    }
    let (status, headers, body) =
        send(get("/api/v1/client/workspace/ws.1/expenses/e1/receipt")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert!(body.contains("\"code\":\"INVALID_ID\""), "{body}");
    let (status, _, _) = send(get("/api/v1/workspace/a$b%2F/storage/summary")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_read() {
    let request = Request::post("/api/image/v1.0/receipt")
        .header(header::CONTENT_TYPE, "image/jpeg")
        .header(header::CONTENT_LENGTH, "10485761")
        .body(Body::from("short"))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.starts_with("<Error><Message>"), "{body}");
}

#[tokio::test]
async fn a_malformed_digest_header_is_a_400() {
    let request = Request::post("/api/image/v1.0/report/R1")
        .header(header::CONTENT_TYPE, "application/pdf")
        .header("x-content-sha256", "xyz")
        .body(Body::from("%PDF"))
        .unwrap();
    assert_eq!(send(request).await.0, StatusCode::BAD_REQUEST);
}

fn multipart(parts: &[(&str, Option<&str>, &str)]) -> Request<Body> {
    let mut body = String::new();
    for (name, file_name, content) in parts {
        body.push_str("--XyZ\r\n");
        match file_name {
            Some(file_name) => body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\r\n"
            )),
            None => body.push_str(&format!(
                "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            )),
        }
        body.push_str(content);
        body.push_str("\r\n");
    }
    body.push_str("--XyZ--\r\n");
    Request::post("/api/v1/client/workspace/ws1/expenses/exp1/receipt")
        .header(header::AUTHORIZATION, "Bearer t")
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_form_without_a_token_is_a_401_before_its_body_is_read() {
    let mut request = multipart(&[("file", Some("r.png"), "png")]);
    request.headers_mut().remove(header::AUTHORIZATION);
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("TOKEN_MISSING"), "{body}");
}

#[tokio::test]
async fn a_form_without_a_file_field_is_a_json_400() {
    let (status, headers, body) = send(multipart(&[("note", None, "hello")])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "MISSING_FILE");
}

#[tokio::test]
async fn a_non_multipart_upload_is_a_json_400() {
    let request = Request::post("/api/v1/client/workspace/ws1/expenses/exp1/receipt")
        .header(header::AUTHORIZATION, "Bearer t")
        .header(header::CONTENT_TYPE, "image/png")
        .body(Body::from("x"))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("INVALID_REQUEST"), "{body}");
}

#[tokio::test]
async fn an_unreachable_ingest_service_is_a_503_with_retry_after() {
    for request in [
        get("/api/v1/client/workspace/ws1/expenses/exp1/receipt"),
        get("/api/v1/workspace/ws1/storage/summary"),
        get("/api/image/v1.0/receipt/img1"),
        Request::delete("/api/v1/client/workspace/ws1/expenses/exp1/receipt")
            .body(Body::empty())
            .unwrap(),
        Request::post("/api/image/v1.0/receipt")
            .header(header::CONTENT_TYPE, "image/png")
            .body(Body::from("png"))
            .unwrap(),
        multipart(&[("file", Some("r.png"), "png")]),
    ] {
        let uri = request.uri().clone();
        let (status, headers, body) = send(request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
        assert_eq!(headers[header::RETRY_AFTER], "1", "{uri}");
        assert!(!body.contains("127.0.0.1"), "{uri}: {body}");
    }
}

#[tokio::test]
async fn an_unknown_concur_version_is_route_not_found() {
    let request = Request::get("/api/image/v9.9/receipt/abc")
        .header(header::AUTHORIZATION, "OAuth t")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        crate::error::Failure::route_not_found().reason(),
        Some(imaging_proto::v1::ErrorReason::RouteNotFound)
    );
    assert!(body.contains("<Error>"), "{body}");
}
