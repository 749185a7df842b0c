//! Concurrency is part of the contract: appends are never lost, an entry takes exactly one
//! image, and concurrent uploads never push a workspace past its quota.

use crate::helpers::{Stack, TestApp, reason, spawn_app_with, target};
use imaging_e2e::fixtures::{jpeg, pdf, pdf_pages, png};
use imaging_proto::v1::TargetKind;
use std::sync::Arc;

/// A service on `stack` whose per-user and per-workspace caps let 16 uploads of one user run at
/// once; with `lock_ttl_millis` tiny, target locks expire mid-work and only the compare-and-set
/// of the records keeps writers apart.
async fn racing_app_on(stack: Stack, lock_ttl_millis: u64) -> TestApp {
    spawn_app_with(stack, |settings| {
        settings.limits.admission.max_per_user = 16;
        settings.limits.admission.max_per_workspace = 16;
        settings.server.lock_ttl_millis = lock_ttl_millis;
    })
    .await
}

async fn racing_app() -> TestApp {
    racing_app_on(Stack::Real, 60_000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_appends_to_one_report_keep_every_page() {
    appends_keep_every_page(racing_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_locks_expiring_mid_work_sixteen_appends_still_keep_every_page_and_leave_no_orphan() {
    for stack in [Stack::Real, Stack::Cluster, Stack::Embedded] {
        appends_keep_every_page(racing_app_on(stack, 1).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_locks_expiring_mid_work_sixteen_uploads_to_one_entry_still_give_one_success() {
    for stack in [Stack::Real, Stack::Cluster, Stack::Embedded] {
        entry_takes_one_image(racing_app_on(stack, 1).await).await;
    }
}

async fn appends_keep_every_page(app: TestApp) {
    let app = Arc::new(app);
    app.register_workspace("w1", 0).await;
    app.register_target(target(TargetKind::Report, "R1"), "w1", "u1")
        .await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut tasks = Vec::new();
    for n in 0..16u32 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let (bytes, kind) = match n % 3 {
                0 => (jpeg(40 + n, 30), "image/jpeg"),
                1 => (png(30, 40 + n), "image/png"),
                _ => (pdf(2), "application/pdf"),
            };
            app.upload(&token, target(TargetKind::Report, "R1"), kind, &bytes)
                .await
        }));
    }
    let mut expected_pages = 0;
    for (n, task) in tasks.into_iter().enumerate() {
        task.await.unwrap().expect("every append succeeds");
        expected_pages += if n % 3 == 2 { 2 } else { 1 };
    }
    let info = app
        .get_image(&token, target(TargetKind::Report, "R1"))
        .await
        .unwrap();
    assert_eq!(info.page_count as usize, expected_pages);
    let objects = app.objects().await;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let stored = app.object(&info.path).await;
    assert_eq!(pdf_pages(&stored), expected_pages);
    assert_eq!(app.used("w1").await, stored.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_uploads_to_one_entry_give_exactly_one_success() {
    entry_takes_one_image(racing_app().await).await;
}

async fn entry_takes_one_image(app: TestApp) {
    let app = Arc::new(app);
    app.register_workspace("w1", 0).await;
    app.register_target(target(TargetKind::ExpenseEntry, "E1"), "w1", "u1")
        .await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut tasks = Vec::new();
    for n in 0..16u32 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            app.upload(
                &token,
                target(TargetKind::ExpenseEntry, "E1"),
                "image/png",
                &png(20 + n, 20),
            )
            .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => assert_eq!(reason(&status), "ALREADY_ATTACHED"),
        }
    }
    assert_eq!(ok, 1);
    let objects = app.objects().await;
    assert_eq!(objects.len(), 1);
    assert_eq!(app.used("w1").await, objects[0].size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_near_the_limit_never_exceed_it() {
    let app = Arc::new(racing_app().await);
    let file = jpeg(200, 200);
    let size = file.len() as u64;
    let limit = size * 5 + size / 2;
    app.register_workspace("w1", limit).await;
    let token = app.token("u1", "w1", &[], &[]);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (app, token, file) = (app.clone(), token.clone(), file.clone());
        tasks.push(tokio::spawn(async move {
            app.upload(&token, target(TargetKind::Receipt, ""), "image/jpeg", &file)
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => assert_eq!(reason(&status), "QUOTA_EXCEEDED"),
        }
    }
    assert_eq!(ok, 5, "exactly as many as fit");
    assert_eq!(app.used("w1").await, 5 * size);
    assert!(app.used("w1").await <= limit);
    assert_eq!(app.objects().await.len(), 5);
}
