//! A user's loose receipts over gRPC: listing a page at a time (stable while receipts come and
//! go), appending to a receipt, deleting one, acting for another user as an admin, and the
//! lists reconcile repairs.

use crate::helpers::{Stack, TestApp, authed, header, messages, reason, spawn_app_with, target};
use imaging_e2e::fixtures::{assert_qpdf_accepts, jpeg, pdf, pdf_pages, pdfinfo_pages, png};
use imaging_proto::v1::{self, TargetKind};

async fn app_on(stack: Stack) -> TestApp {
    spawn_app_with(stack, |settings| {
        settings.limits.admission.max_per_user = 16;
    })
    .await
}

fn receipt(id: &str) -> v1::Target {
    target(TargetKind::Receipt, id)
}

/// Uploads a small receipt and returns its ID.
async fn new_receipt(app: &TestApp, token: &str, n: u32) -> String {
    app.upload(token, receipt(""), "image/png", &png(8 + n % 50, 8))
        .await
        .unwrap()
        .image_id
}

/// Every ID of the caller's list, page by page.
async fn list_all(app: &TestApp, token: &str, owner: &str, size: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut token_in = String::new();
    loop {
        let page = app.list(token, owner, size, &token_in).await.unwrap();
        assert!(page.images.len() <= size as usize);
        ids.extend(page.images.into_iter().map(|image| image.image_id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        token_in = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_receipts_come_back_newest_first_in_pages_that_stay_stable_on_every_backend() {
    for stack in [Stack::Real, Stack::Cluster, Stack::Embedded] {
        let app = app_on(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let mut uploaded = Vec::new();
        for n in 0..60 {
            uploaded.push(new_receipt(&app, &token, n).await);
            // Distinct creation times: the list orders by time, then by ID.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let newest_first: Vec<String> = uploaded.iter().rev().cloned().collect();

        let first = app.list(&token, "", 25, "").await.unwrap();
        let ids: Vec<String> = first.images.iter().map(|i| i.image_id.clone()).collect();
        assert_eq!(ids, newest_first[..25], "{stack:?}");
        // Between pages: a new receipt (newer than every listed one) and a deletion of one not
        // seen yet. Neither shows up in a later page, nothing repeats, nothing else is skipped.
        let added = new_receipt(&app, &token, 99).await;
        let deleted = newest_first[40].clone();
        app.delete_image(&token, receipt(&deleted)).await.unwrap();
        let second = app
            .list(&token, "", 25, &first.next_page_token)
            .await
            .unwrap();
        let third = app
            .list(&token, "", 25, &second.next_page_token)
            .await
            .unwrap();
        assert!(third.next_page_token.is_empty(), "the last page");
        let rest: Vec<String> = second
            .images
            .iter()
            .chain(&third.images)
            .map(|i| i.image_id.clone())
            .collect();
        let expected: Vec<String> = newest_first[25..]
            .iter()
            .filter(|id| **id != deleted)
            .cloned()
            .collect();
        assert_eq!(rest, expected, "{stack:?}");
        assert!(!rest.contains(&added));

        // From the start again: the new receipt first, 60 in all.
        let all = list_all(&app, &token, "", 25).await;
        assert_eq!(all.len(), 60);
        assert_eq!(all[0], added);
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 60);
    }
}

#[tokio::test]
async fn page_sizes_and_tokens_are_checked() {
    let app = app_on(Stack::Embedded).await;
    let token = app.token("u1", "w1", &[], &[]);
    for n in 0..3 {
        new_receipt(&app, &token, n).await;
    }
    let default = app.list(&token, "", 0, "").await.unwrap();
    assert_eq!(default.images.len(), 3, "0 means the default size (25)");
    assert!(default.next_page_token.is_empty());
    let huge = app.list(&token, "", 100_000, "").await.unwrap();
    assert_eq!(huge.images.len(), 3, "sizes past 100 are taken as 100");
    for (size, page_token) in [(-1, ""), (10, "not-a-token"), (10, "../../etc")] {
        let refused = app.list(&token, "", size, page_token).await.unwrap_err();
        assert_eq!(reason(&refused), "INVALID_REQUEST", "{size} {page_token}");
    }
    assert!(
        app.list(&app.token("u9", "w1", &[], &[]), "", 10, "")
            .await
            .unwrap()
            .images
            .is_empty()
    );
}

#[tokio::test]
async fn another_users_receipts_are_listed_and_created_only_by_an_admin() {
    let app = app_on(Stack::Real).await;
    let owner = app.token("u1", "w1", &[], &[]);
    let mine = new_receipt(&app, &owner, 1).await;
    let other = app.token("u2", "w1", &[], &[]);
    let refused = app.list(&other, "u1", 10, "").await.unwrap_err();
    assert_eq!(reason(&refused), "PERMISSION_DENIED");
    let mut h = header(receipt(""), "image/png", &png(9, 9));
    h.owner = "u1".into();
    let refused = app
        .upload_messages(&other, messages(h.clone(), &png(9, 9), 1024))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "PERMISSION_DENIED");

    let admin = app.token("a1", "w1", &["company_admin"], &[]);
    let made = app
        .upload_messages(&admin, messages(h, &png(9, 9), 1024))
        .await
        .unwrap();
    let listed = list_all(&app, &admin, "u1", 10).await;
    assert_eq!(listed, vec![made.image_id.clone(), mine]);
    let info = app
        .get_image(&owner, receipt(&made.image_id))
        .await
        .unwrap();
    assert_eq!(info.owner, "u1", "the admin made it for u1");
    assert!(
        list_all(&app, &admin, "", 10).await.is_empty(),
        "the admin's own list"
    );
    // Another workspace's admin sees nothing of w1.
    let elsewhere = app.token("a2", "w2", &["company_admin"], &[]);
    assert!(list_all(&app, &elsewhere, "u1", 10).await.is_empty());
}

#[tokio::test]
async fn a_jpeg_receipt_appended_with_a_jpeg_a_png_and_a_pdf_becomes_one_pdf_of_every_page() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = app_on(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let photo = jpeg(120, 80);
        let id = app
            .upload(&token, receipt(""), "image/jpeg", &photo)
            .await
            .unwrap()
            .image_id;
        let second = jpeg(60, 90);
        for (kind, bytes) in [
            ("image/jpeg", second.clone()),
            ("image/png", png(30, 20)),
            ("application/pdf", pdf(2)),
        ] {
            let done = app
                .upload(&token, receipt(&id), kind, &bytes)
                .await
                .unwrap();
            assert_eq!(done.image_id, id);
        }
        let info = app.get_image(&token, receipt(&id)).await.unwrap();
        assert_eq!(info.content_type, "application/pdf");
        assert_eq!(info.page_count, 5);
        let stored = app.object(&info.path).await;
        assert_eq!(pdf_pages(&stored), 5);
        assert_eq!(pdfinfo_pages(&stored), 5);
        assert_qpdf_accepts(&stored);
        let find = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
        assert!(
            find(&photo) && find(&second),
            "the JPEG pages embed the uploaded bytes"
        );
        assert_eq!(app.used("w1").await, stored.len() as u64);
        assert_eq!(app.objects().await.len(), 1);
        assert_eq!(list_all(&app, &token, "", 10).await, vec![id.clone()]);

        // Someone else's receipt, or one of another workspace, cannot be appended to.
        let stranger = app.token("u2", "w1", &[], &[]);
        let refused = app
            .upload(&stranger, receipt(&id), "image/png", &png(5, 5))
            .await
            .unwrap_err();
        assert_eq!(reason(&refused), "PERMISSION_DENIED");
        let outsider = app.token("u1", "w2", &[], &[]);
        let refused = app
            .upload(&outsider, receipt(&id), "image/png", &png(5, 5))
            .await
            .unwrap_err();
        assert_eq!(reason(&refused), "IMAGE_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_deleted_receipt_leaves_its_list_and_releases_its_bytes() {
    for stack in [Stack::Real, Stack::Embedded] {
        let app = app_on(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let keep = new_receipt(&app, &token, 1).await;
        let gone = new_receipt(&app, &token, 2).await;
        let before = app.used("w1").await;
        let released = app.delete_image(&token, receipt(&gone)).await.unwrap();
        assert_eq!(app.used("w1").await, before - released);
        assert_eq!(list_all(&app, &token, "", 10).await, vec![keep]);
        let again = app.delete_image(&token, receipt(&gone)).await.unwrap_err();
        assert_eq!(reason(&again), "IMAGE_NOT_FOUND");
        let read = app.get_image(&token, receipt(&gone)).await.unwrap_err();
        assert_eq!(reason(&read), "IMAGE_NOT_FOUND");
    }
}

#[tokio::test]
async fn reconcile_puts_missing_entries_back_and_removes_stray_ones() {
    use ingest_service::reconcile::reconcile_listings;
    use ingest_service::state::{Listed, listing_entry};
    for stack in [Stack::Real, Stack::Embedded] {
        let app = app_on(stack).await;
        let token = app.token("u1", "w1", &[], &[]);
        let a = new_receipt(&app, &token, 1).await;
        let b = new_receipt(&app, &token, 2).await;
        let catalog = app.backends.catalog.as_ref();
        let entries = catalog.listings().await.unwrap();
        assert_eq!(entries.len(), 2);
        // One entry lost, one stray entry naming no receipt.
        catalog.set_listed(&entries[0], false).await.unwrap();
        let stray = Listed {
            workspace: "w1".into(),
            owner: "u1".into(),
            entry: listing_entry(7, "nothing"),
        };
        catalog.set_listed(&stray, true).await.unwrap();
        let found = reconcile_listings(catalog, false).await.unwrap();
        assert_eq!((found.added, found.removed), (1, 1), "a dry run counts");
        assert_eq!(
            catalog.listings().await.unwrap().len(),
            2,
            "and changes nothing"
        );
        let repaired = reconcile_listings(catalog, true).await.unwrap();
        assert_eq!((repaired.added, repaired.removed), (1, 1));
        assert_eq!(
            list_all(&app, &token, "", 10).await,
            vec![b.clone(), a.clone()]
        );
        let clean = reconcile_listings(catalog, true).await.unwrap();
        assert_eq!((clean.added, clean.removed), (0, 0));
    }
}

#[tokio::test]
async fn list_images_takes_receipts_only() {
    let app = app_on(Stack::Embedded).await;
    let token = app.token("u1", "w1", &[], &[]);
    let refused = app
        .ingest
        .clone()
        .list_images(authed(
            &token,
            v1::ListImagesRequest {
                kind: TargetKind::Report as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "INVALID_REQUEST");
}
