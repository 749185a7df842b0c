//! The OpenAPI 3 document of every route, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `/openapi.json`.

use crate::error::ErrorBody;
use crate::routes::{concur, health, receipts_v3, receipts_v4, resumable, tus, workspace};
use axum::Json;
use utoipa::OpenApi;

/// The gateway's API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Receipt image gateway",
        description = "Concur Image v1 (raw bytes in, XML out), Concur Receipt Image v3 \
            (raw bytes or multipart in; XML out, or JSON with `Accept: application/json`) and \
            workspace receipts (multipart in, JSON out), and Concur Receipts v4 image-only receipts \
            (multipart in, accepted with 202 and processed asynchronously; JSON out). Every call needs `Authorization: Bearer <jwt>` \
            (Concur routes also accept `OAuth <jwt>`). Uploads accept `Idempotency-Key` and a \
            SHA-256 in `Digest: sha-256=<base64>`, `Content-Digest: sha-256=:<base64>:` or \
            `X-Content-SHA256: <hex>`. Resumable uploads: tus 1.0 at `/api/uploads/`, and the \
            HTTP resumable-upload draft (interop version 8) on every upload route \
            (`Upload-Complete: ?0`), its upload resources at `/api/resumable/{id}`."
    ),
    paths(
        concur::post_receipt,
        concur::post_expense_entry,
        concur::post_invoice,
        concur::post_report,
        concur::get_receipt,
        concur::get_expense_entry,
        concur::get_invoice,
        concur::get_report,
        receipts_v3::list,
        receipts_v3::create,
        receipts_v3::read,
        receipts_v3::append,
        receipts_v3::remove,
        receipts_v4::index,
        receipts_v4::create,
        receipts_v4::status,
        receipts_v4::list,
        receipts_v4::metadata,
        receipts_v4::image,
        receipts_v4::receipt_image,
        workspace::upload_receipt,
        workspace::get_receipt,
        workspace::delete_receipt,
        workspace::storage_summary,
        tus::options,
        tus::create,
        tus::status,
        tus::append,
        tus::cancel,
        resumable::offset,
        resumable::append,
        resumable::cancel,
        health::healthz,
        health::readyz,
        openapi_json,
    ),
    components(schemas(
        ErrorBody,
        workspace::ReceiptImage,
        workspace::StorageSummary,
        receipts_v3::ReceiptImageItem,
        receipts_v3::ReceiptImagesPage,
        receipts_v3::ImageDocument,
        receipts_v4::ServiceIndex,
        receipts_v4::Link,
        receipts_v4::ProcessingStatusDocument,
        receipts_v4::LogEntry,
        receipts_v4::ReceiptImageMetadata,
        receipts_v4::ReceiptImagesList,
        crate::routes::DuplicateJson
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "Operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
