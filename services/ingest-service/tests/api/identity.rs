//! Who may do what, as an attacker would try it: dev secrets outside dev mode, tokens for keys
//! the service does not take, service tokens reaching into other workspaces, targets moved
//! between workspaces, receipts for workspaces that do not exist.

use crate::helpers::{Stack, authed, reason, spawn_app, spawn_app_with, target, test_settings};
use imaging_e2e::fixtures::{RS256_PUBLIC_KEY_PEM, jpeg};
use imaging_proto::v1::{self, TargetKind};
use ingest_service::auth::{Claims, mint_hs256};
use ingest_service::configuration::DEV_HS256_SECRET;
use ingest_service::startup::Application;
use secrecy::SecretString;
use tonic::Code;

fn register_target(ws: &str, owner: &str) -> v1::RegisterTargetRequest {
    v1::RegisterTargetRequest {
        target: Some(target(TargetKind::ExpenseEntry, "E1")),
        workspace_id: ws.into(),
        owner: owner.into(),
    }
}

#[tokio::test]
async fn a_registered_target_never_moves_to_another_workspace_or_owner() {
    let app = spawn_app(Stack::Real).await;
    let platform = app.service_token();
    let mut registry = app.registry.clone();
    let created = registry
        .register_target(authed(&platform, register_target("w1", "u1")))
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let again = registry
        .register_target(authed(&platform, register_target("w1", "u1")))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created, "the same registration is no change");
    for (ws, owner) in [("w2", "u1"), ("w1", "u2")] {
        let refused = registry
            .register_target(authed(&platform, register_target(ws, owner)))
            .await
            .unwrap_err();
        assert_eq!(reason(&refused), "TARGET_CONFLICT", "{ws}/{owner}");
        assert_eq!(refused.code(), Code::FailedPrecondition);
    }
    let owner = app.token("u1", "w1", &[], &[]);
    app.upload(
        &owner,
        target(TargetKind::ExpenseEntry, "E1"),
        "image/jpeg",
        &jpeg(20, 20),
    )
    .await
    .expect("the first owner still owns it");
    let intruder = app.token("u2", "w1", &[], &[]);
    let denied = app
        .get_image(&intruder, target(TargetKind::ExpenseEntry, "E1"))
        .await
        .unwrap_err();
    assert_eq!(reason(&denied), "PERMISSION_DENIED");
}

#[tokio::test]
async fn a_service_token_manages_only_its_own_workspace() {
    let app = spawn_app(Stack::Embedded).await;
    let of_w2 = app.token("svc", "w2", &["service"], &[]);
    let mut registry = app.registry.clone();
    let refused = registry
        .register_target(authed(&of_w2, register_target("w1", "u1")))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "PERMISSION_DENIED");
    let refused = registry
        .register_workspace(authed(
            &of_w2,
            v1::RegisterWorkspaceRequest {
                workspace_id: "w1".into(),
                quota_bytes: 1,
                refuse_duplicates: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "PERMISSION_DENIED");

    registry
        .register_target(authed(&app.service_token(), register_target("w1", "u1")))
        .await
        .unwrap();
    let refused = registry
        .remove_target(authed(
            &of_w2,
            v1::RemoveTargetRequest {
                target: Some(target(TargetKind::ExpenseEntry, "E1")),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "PERMISSION_DENIED");

    let of_w1 = app.token("svc", "w1", &["service"], &[]);
    let removed = registry
        .remove_target(authed(
            &of_w1,
            v1::RemoveTargetRequest {
                target: Some(target(TargetKind::ExpenseEntry, "E1")),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        removed.removed,
        "a token of the target's workspace may remove it"
    );
}

#[tokio::test]
async fn an_admin_acting_for_a_user_reads_appends_and_deletes_only_that_users_receipts() {
    let app = spawn_app(Stack::Real).await;
    app.register_workspace("w1", 10_000_000).await;
    let user = app.token("u1", "w1", &[], &[]);
    let admin = app.token("boss", "w1", &["web_services_admin"], &[]);
    let peer = app.token("u2", "w1", &[], &[]);
    let own = app
        .upload(
            &user,
            target(TargetKind::Receipt, ""),
            "image/jpeg",
            &jpeg(20, 20),
        )
        .await
        .unwrap()
        .image_id;
    let receipt = || target(TargetKind::Receipt, &own);

    // One call each: the caller's right to act for the user, and the receipt being theirs.
    let info = app.get_image_for(&admin, receipt(), "u1").await.unwrap();
    assert_eq!(info.owner, "u1");
    let other = app
        .get_image_for(&admin, receipt(), "u2")
        .await
        .unwrap_err();
    assert_eq!(reason(&other), "IMAGE_NOT_FOUND");
    let denied = app.get_image_for(&peer, receipt(), "u1").await.unwrap_err();
    assert_eq!(reason(&denied), "PERMISSION_DENIED");
    let entry = app
        .get_image_for(&admin, target(TargetKind::ExpenseEntry, "e1"), "u1")
        .await
        .unwrap_err();
    assert_eq!(
        reason(&entry),
        "INVALID_REQUEST",
        "only receipts have owners"
    );

    // An append for the wrong user changes nothing; for the right one it appends.
    let mut wrong = imaging_e2e::service::header(receipt(), "image/jpeg", &jpeg(10, 10));
    wrong.owner = "u2".into();
    let refused = app
        .upload_messages(
            &admin,
            imaging_e2e::service::messages(wrong, &jpeg(10, 10), 4096),
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "IMAGE_NOT_FOUND");
    assert_eq!(app.get_image(&user, receipt()).await.unwrap().page_count, 1);
    let mut right = imaging_e2e::service::header(receipt(), "image/jpeg", &jpeg(10, 10));
    right.owner = "u1".into();
    app.upload_messages(
        &admin,
        imaging_e2e::service::messages(right, &jpeg(10, 10), 4096),
    )
    .await
    .unwrap();
    assert_eq!(app.get_image(&user, receipt()).await.unwrap().page_count, 2);

    // A delete for the wrong user keeps the receipt; for the right one it goes.
    let kept = app
        .delete_image_for(&admin, receipt(), "u2")
        .await
        .unwrap_err();
    assert_eq!(reason(&kept), "IMAGE_NOT_FOUND");
    assert!(app.get_image(&user, receipt()).await.is_ok());
    let denied = app
        .delete_image_for(&peer, receipt(), "u1")
        .await
        .unwrap_err();
    assert_eq!(reason(&denied), "PERMISSION_DENIED");
    assert!(app.delete_image_for(&admin, receipt(), "u1").await.unwrap() > 0);
    assert_eq!(
        reason(&app.get_image(&user, receipt()).await.unwrap_err()),
        "IMAGE_NOT_FOUND"
    );
    assert_eq!(app.used("w1").await, 0);
}

#[tokio::test]
async fn a_receipt_for_a_workspace_never_registered_is_refused_and_nothing_is_stored() {
    let app = spawn_app(Stack::Real).await;
    let token = app.token("u1", "never-registered", &[], &[]);
    let refused = app
        .upload(
            &token,
            target(TargetKind::Receipt, ""),
            "image/jpeg",
            &jpeg(20, 20),
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "TARGET_NOT_FOUND");
    assert!(app.objects().await.is_empty());
    assert_eq!(app.used("never-registered").await, 0);
}

#[tokio::test]
async fn with_only_an_rs256_key_configured_an_hs256_dev_token_is_refused() {
    let app = spawn_app_with(Stack::Embedded, |settings| {
        settings.dev = false;
        settings.auth.hs256_secret = SecretString::from("");
        settings.auth.rs256_public_key_pem = RS256_PUBLIC_KEY_PEM.into();
        if let ingest_service::configuration::StorageSettings::Filesystem {
            url_signing_key, ..
        } = &mut settings.storage
        {
            *url_signing_key = SecretString::from("a-production-signing-key");
        }
    })
    .await;
    let forged = mint_hs256(
        DEV_HS256_SECRET,
        &Claims::expiring_in("attacker", "*", &["service"], &[], 3600),
    )
    .unwrap();
    let refused = app
        .registry
        .clone()
        .register_workspace(authed(
            &forged,
            v1::RegisterWorkspaceRequest {
                workspace_id: "w9".into(),
                quota_bytes: 0,
                refuse_duplicates: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(reason(&refused), "TOKEN_INVALID");
}

#[tokio::test]
async fn outside_dev_mode_the_service_refuses_to_start_without_keys_naming_the_setting() {
    let data = tempfile::tempdir().unwrap();
    let (mut settings, _servers) = test_settings(Stack::Embedded, data.path()).await;
    settings.dev = false;
    settings.auth.hs256_secret = SecretString::from("");
    let refused = Application::build(settings.clone()).await.unwrap_err();
    assert!(
        refused.to_string().contains("auth.hs256_secret"),
        "{refused}"
    );
    settings.auth.hs256_secret = SecretString::from(DEV_HS256_SECRET);
    let refused = Application::build(settings).await.unwrap_err();
    assert!(refused.to_string().contains("dev secret"), "{refused}");
}
