//! Report PDFs that grow by incremental updates, on both storage backends: every append keeps
//! the report readable by three independent parsers with every page in order, the stored size
//! is the recorded size and the quota charge, and the bounds refuse an append without changing
//! anything.

use crate::helpers::{Stack, TestApp, reason, spawn_app_with, target};
use imaging_e2e::fixtures::{assert_qpdf_accepts, jpeg, pdf, pdfinfo_pages, png};
use imaging_proto::v1::TargetKind;
use lopdf::{Document, Object};

/// What a page of the report must show.
#[derive(Debug, Clone, PartialEq)]
enum Page {
    /// A JPEG page embedding exactly these bytes.
    Jpeg(Vec<u8>),
    /// A PNG page whose image is this wide and tall.
    Png(u32, u32),
    /// A page moved over from an uploaded PDF.
    Pdf,
}

/// What the n-th upload is: content type, bytes and the pages it adds.
fn upload(n: u32) -> (&'static str, Vec<u8>, Vec<Page>) {
    match n % 4 {
        0 => {
            let bytes = jpeg(40 + n, 30);
            ("image/jpeg", bytes.clone(), vec![Page::Jpeg(bytes)])
        }
        1 => ("image/png", png(30, 40 + n), vec![Page::Png(30, 40 + n)]),
        2 => ("application/pdf", pdf(2), vec![Page::Pdf, Page::Pdf]),
        _ => ("application/pdf", pdf(1), vec![Page::Pdf]),
    }
}

/// The pages of a report as lopdf reads them, in order.
fn pages_of(bytes: &[u8]) -> Vec<Page> {
    let doc = Document::load_mem(bytes).unwrap();
    doc.get_pages()
        .into_values()
        .map(|page| {
            let page = doc.get_dictionary(page).unwrap();
            let image = page
                .get(b"Resources")
                .and_then(|resources| doc.dereference(resources))
                .and_then(|(_, resources)| resources.as_dict())
                .and_then(|resources| resources.get(b"XObject"))
                .and_then(Object::as_dict)
                .and_then(|xobjects| xobjects.get(b"Im0"))
                .and_then(Object::as_reference)
                .and_then(|id| doc.get_object(id))
                .and_then(Object::as_stream);
            match image {
                Err(_) => Page::Pdf,
                Ok(stream) => match stream.dict.get(b"Filter").unwrap().as_name().unwrap() {
                    b"DCTDecode" => Page::Jpeg(stream.content.clone()),
                    _ => Page::Png(
                        stream.dict.get(b"Width").unwrap().as_i64().unwrap() as u32,
                        stream.dict.get(b"Height").unwrap().as_i64().unwrap() as u32,
                    ),
                },
            }
        })
        .collect()
}

/// A one-page PDF of about `len` bytes: its content stream carries a long comment that does not
/// compress (so that a few of them take a report past S3's 5 MiB part minimum).
fn heavy_pdf(len: usize) -> Vec<u8> {
    use lopdf::{Stream, dictionary};
    let mut content = b"BT /F1 12 Tf 72 720 Td (heavy) Tj ET\n".to_vec();
    let mut state: u64 = len as u64;
    while content.len() < len {
        content.push(b'%');
        for _ in 0..79 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            content.push(b"0123456789abcdef"[(state >> 60) as usize]);
        }
        content.push(b'\n');
    }
    let mut doc = Document::with_version("1.5");
    let pages = doc.new_object_id();
    let contents = doc.add_object(Stream::new(dictionary! {}, content));
    let page = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        "Contents" => contents,
    });
    doc.objects.insert(
        pages,
        Object::Dictionary(
            dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 },
        ),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

async fn app_on(stack: Stack) -> TestApp {
    spawn_app_with(stack, |settings| {
        settings.limits.admission.max_per_user = 16;
    })
    .await
}

async fn fifty_appends_keep_the_report_whole(app: TestApp) {
    app.register_target(target(TargetKind::Report, "R1"), "w1", "u1")
        .await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut expected: Vec<Page> = Vec::new();
    for n in 0..51u32 {
        let (content_type, bytes, pages) = upload(n);
        let done = app
            .upload(
                &token,
                target(TargetKind::Report, "R1"),
                content_type,
                &bytes,
            )
            .await
            .unwrap_or_else(|status| panic!("upload {n}: {status:?}"));
        expected.extend(pages);
        let stored = app.object(&done.path).await;
        assert_eq!(done.page_count as usize, expected.len(), "upload {n}");
        assert_eq!(
            done.size_bytes,
            stored.len() as u64,
            "recorded size, upload {n}"
        );
        assert_eq!(
            app.used("w1").await,
            stored.len() as u64,
            "quota charge, upload {n}"
        );
        let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&stored).into();
        assert_eq!(done.sha256, sha.to_vec(), "recorded SHA-256, upload {n}");
        assert_qpdf_accepts(&stored);
        assert_eq!(
            pdfinfo_pages(&stored),
            expected.len(),
            "pdfinfo, upload {n}"
        );
        assert_eq!(pages_of(&stored), expected, "lopdf, page order, upload {n}");
    }
    let objects = app.objects().await;
    assert_eq!(objects.len(), 1, "no earlier version left: {objects:?}");

    // Past 5 MiB, S3 builds each new version by copying the old one itself (UploadPartCopy).
    for n in 0..4u32 {
        let (content_type, bytes, pages) = if n < 2 {
            ("application/pdf", heavy_pdf(3_000_000), vec![Page::Pdf])
        } else {
            upload(n)
        };
        let done = app
            .upload(
                &token,
                target(TargetKind::Report, "R1"),
                content_type,
                &bytes,
            )
            .await
            .unwrap();
        expected.extend(pages);
        let stored = app.object(&done.path).await;
        assert_eq!(done.size_bytes, stored.len() as u64);
        assert_eq!(app.used("w1").await, stored.len() as u64);
        assert_qpdf_accepts(&stored);
        assert_eq!(pdfinfo_pages(&stored), expected.len());
        assert_eq!(pages_of(&stored), expected);
    }
    let used = app.used("w1").await;
    assert!(used > 5 * 1024 * 1024 + 700_000, "{used}");
    assert_eq!(app.objects().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_appends_on_s3_keep_every_page_in_order_for_three_parsers() {
    fifty_appends_keep_the_report_whole(app_on(Stack::Real).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_appends_on_the_filesystem_keep_every_page_in_order_for_three_parsers() {
    fifty_appends_keep_the_report_whole(app_on(Stack::Embedded).await).await;
}

#[tokio::test]
async fn an_append_past_the_page_or_size_bound_is_refused_and_changes_nothing() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = spawn_app_with(stack, |settings| {
            settings.limits.report.max_pages = 3;
        })
        .await;
        app.register_target(target(TargetKind::Report, "R1"), "w1", "u1")
            .await;
        let token = app.token("u1", "w1", &[], &[]);
        let report = target(TargetKind::Report, "R1");
        app.upload(&token, report.clone(), "image/png", &png(20, 20))
            .await
            .unwrap();
        let full = app
            .upload(&token, report.clone(), "application/pdf", &pdf(2))
            .await
            .unwrap();
        assert_eq!(full.page_count, 3);
        let before = (app.objects().await, app.used("w1").await);
        let refused = app
            .upload(&token, report.clone(), "image/jpeg", &jpeg(20, 20))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::OutOfRange);
        assert_eq!(reason(&refused), "REPORT_TOO_LARGE");
        assert_eq!((app.objects().await, app.used("w1").await), before);
        let info = app.get_image(&token, report.clone()).await.unwrap();
        assert_eq!((info.page_count, info.path), (3, full.path.clone()));
    }

    // The size bound: a report may not grow past `max_report_bytes`.
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.limits.report.max_bytes = 4_000;
    })
    .await;
    app.register_target(target(TargetKind::Report, "R2"), "w1", "u1")
        .await;
    let token = app.token("u1", "w1", &[], &[]);
    let report = target(TargetKind::Report, "R2");
    let first = app
        .upload(&token, report.clone(), "application/pdf", &pdf(1))
        .await
        .unwrap();
    assert!(first.size_bytes < 4_000);
    let refused = app
        .upload(&token, report.clone(), "image/jpeg", &jpeg(200, 200))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "REPORT_TOO_LARGE");
    assert_eq!(app.used("w1").await, first.size_bytes);
    assert_eq!(app.objects().await.len(), 1);
}
