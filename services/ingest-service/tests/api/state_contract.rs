//! The state contract: one named test per behaviour of the quota counters and the catalog, run
//! against every state backend built directly (the embedded store, Redis on a real
//! `redis-server`, and a real 3-primary Redis Cluster).

use imaging_e2e::{RedisCluster, RedisServer};
use ingest_service::state::{
    Catalog, Delivery, DeliveryState, DupEntry, EmbeddedState, HookDelivery, IdempotencyRecord,
    ImageRecord, JOBS_OUTBOX, JobNext, JobRecord, JobStatus, Listed, Listing, OutboxEntry, Quota,
    RedisState, Registered, Reservation, SessionRecord, SessionResult, SessionUpload, Swap,
    Swapped, TargetRecord, WebhookRecord, listing_entry, now_millis,
};
use std::sync::Arc;
use std::time::Duration;

/// A state backend (both traits) and what keeps its server alive.
pub struct Backend {
    pub quota: Arc<dyn Quota>,
    pub catalog: Arc<dyn Catalog>,
    _keep: Box<dyn std::any::Any + Send>,
}

/// The embedded store in a temp dir.
pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(EmbeddedState::open(dir.path().join("state.json")).unwrap());
    Backend {
        quota: state.clone(),
        catalog: state,
        _keep: Box::new(dir),
    }
}

/// Redis on a fresh `redis-server`.
pub async fn redis() -> Backend {
    let server = RedisServer::start();
    let state = Arc::new(RedisState::new(&server.url(), "test:").unwrap());
    Backend {
        quota: state.clone(),
        catalog: state,
        _keep: Box::new(server),
    }
}

/// Redis on a real 3-primary Redis Cluster.
pub async fn cluster() -> Backend {
    let cluster = RedisCluster::start();
    let state = Arc::new(RedisState::new(&cluster.url(), "test:").unwrap());
    Backend {
        quota: state.clone(),
        catalog: state,
        _keep: Box::new(cluster),
    }
}

fn image(key: &str, size: u64) -> ImageRecord {
    ImageRecord {
        image_id: "e1".into(),
        key: key.into(),
        workspace: "w1".into(),
        owner: "u1".into(),
        content_type: "application/pdf".into(),
        size,
        width: 0,
        height: 0,
        page_count: 2,
        sha256: "00".into(),
        report: None,
        listed: None,
        phash: None,
        duplicates: Vec::new(),
    }
}

async fn an_unregistered_workspace_has_no_limit_and_no_usage(backend: &Backend) {
    assert_eq!(backend.quota.limit("w1").await.unwrap(), None);
    assert_eq!(backend.quota.used("w1").await.unwrap(), 0);
}

const TTL: Duration = Duration::from_secs(60);

async fn reservations_are_granted_up_to_the_limit_and_refused_past_it(backend: &Backend) {
    let quota = backend.quota.as_ref();
    quota.set_limit("w1", 100).await.unwrap();
    assert_eq!(quota.limit("w1").await.unwrap(), Some(100));
    assert_eq!(
        quota.reserve("w1", "r1", 60, TTL, 1000).await.unwrap(),
        Reservation::Granted { used: 60 }
    );
    assert_eq!(
        quota.reserve("w1", "r2", 41, TTL, 1000).await.unwrap(),
        Reservation::Exceeded {
            limit: 100,
            used: 60
        }
    );
    assert_eq!(
        quota.reserve("w1", "r3", 40, TTL, 1000).await.unwrap(),
        Reservation::Granted { used: 100 }
    );
    assert_eq!(
        quota.used("w1").await.unwrap(),
        0,
        "reservations are not usage until committed"
    );
}

async fn a_retried_reservation_is_not_charged_twice(backend: &Backend) {
    let quota = backend.quota.as_ref();
    quota.set_limit("w1", 100).await.unwrap();
    quota.reserve("w1", "r1", 60, TTL, 1000).await.unwrap();
    assert_eq!(
        quota.reserve("w1", "r1", 60, TTL, 1000).await.unwrap(),
        Reservation::Granted { used: 60 },
        "the same ID after a lost reply"
    );
    assert_eq!(
        quota.reserve("w1", "r2", 40, TTL, 1000).await.unwrap(),
        Reservation::Granted { used: 100 }
    );
}

async fn a_released_or_lapsed_reservation_gives_its_bytes_back(backend: &Backend) {
    let quota = backend.quota.as_ref();
    quota.set_limit("w1", 100).await.unwrap();
    quota.reserve("w1", "r1", 70, TTL, 1000).await.unwrap();
    quota.release("w1", "r1").await.unwrap();
    quota.release("w1", "gone").await.unwrap();
    quota
        .reserve("w1", "r2", 90, Duration::from_millis(100), 1000)
        .await
        .unwrap();
    assert!(matches!(
        quota.reserve("w1", "r3", 20, TTL, 1000).await.unwrap(),
        Reservation::Exceeded { .. }
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        quota.reserve("w1", "r3", 20, TTL, 1000).await.unwrap(),
        Reservation::Granted { used: 20 },
        "a reservation nobody committed lapses by itself"
    );
}

async fn an_unregistered_workspace_is_held_to_the_default_limit(backend: &Backend) {
    let quota = backend.quota.as_ref();
    assert_eq!(
        quota.reserve("w2", "a", 5, TTL, 4).await.unwrap(),
        Reservation::Exceeded { limit: 4, used: 0 }
    );
    assert_eq!(
        quota.reserve("w2", "b", 4, TTL, 4).await.unwrap(),
        Reservation::Granted { used: 4 }
    );
}

async fn usage_is_replaced_only_from_the_value_read(backend: &Backend) {
    let quota = backend.quota.as_ref();
    quota.set_limit("w1", 10).await.unwrap();
    assert!(quota.replace_used("w1", 0, 9).await.unwrap());
    assert_eq!(quota.used("w1").await.unwrap(), 9);
    assert!(!quota.replace_used("w1", 5, 3).await.unwrap(), "not from 5");
    assert_eq!(quota.used("w1").await.unwrap(), 9);
    assert!(quota.replace_used("w1", 9, 3).await.unwrap());
    assert_eq!(quota.used("w1").await.unwrap(), 3);
    assert_eq!(quota.workspaces().await.unwrap(), vec!["w1".to_owned()]);
}

async fn a_target_registers_once_and_can_be_removed(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let target = TargetRecord {
        workspace: "w1".into(),
        owner: "u1".into(),
    };
    assert_eq!(
        catalog
            .put_target("EXPENSE_ENTRY:e1", &target)
            .await
            .unwrap(),
        Registered::Created
    );
    assert_eq!(
        catalog
            .put_target("EXPENSE_ENTRY:e1", &target)
            .await
            .unwrap(),
        Registered::Unchanged
    );
    let elsewhere = TargetRecord {
        workspace: "w2".into(),
        owner: "u2".into(),
    };
    assert_eq!(
        catalog
            .put_target("EXPENSE_ENTRY:e1", &elsewhere)
            .await
            .unwrap(),
        Registered::Conflict(target.clone()),
        "a registered target never moves"
    );
    assert_eq!(
        catalog.target("EXPENSE_ENTRY:e1").await.unwrap(),
        Some(target)
    );
    assert!(catalog.remove_target("EXPENSE_ENTRY:e1").await.unwrap());
    assert!(!catalog.remove_target("EXPENSE_ENTRY:e1").await.unwrap());
    assert_eq!(catalog.target("EXPENSE_ENTRY:e1").await.unwrap(), None);
}

fn swap<'a>(
    expected: Option<&'a str>,
    image: Option<&'a ImageRecord>,
    release: u64,
    reservation: Option<(&'a str, u64)>,
) -> Swap<'a> {
    Swap {
        key: "REPORT:e1",
        expected,
        image,
        workspace: "w1",
        release,
        reservation,
        default_limit: 1000,
        listing: None,
        event: None,
        index: None,
        unindex: None,
        refuse_exact: false,
    }
}

async fn an_image_record_changes_only_from_the_record_the_writer_read(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let quota = backend.quota.as_ref();
    let first = image("ws/w1/expense-entries/e1/a.pdf", 42);
    let second = image("ws/w1/expense-entries/e1/b.pdf", 30);
    quota.reserve("w1", "r1", 42, TTL, 1000).await.unwrap();
    assert_eq!(
        catalog
            .swap_image(&swap(None, Some(&first), 0, Some(("r1", 42))))
            .await
            .unwrap(),
        Swapped::Done
    );
    assert_eq!(
        quota.used("w1").await.unwrap(),
        42,
        "the reservation became usage"
    );
    assert_eq!(
        catalog
            .swap_image(&swap(None, Some(&second), 0, None))
            .await
            .unwrap(),
        Swapped::Conflict,
        "a writer that read no record cannot overwrite one"
    );
    assert_eq!(
        catalog
            .swap_image(&swap(Some("ws/w1/other.pdf"), Some(&second), 12, None))
            .await
            .unwrap(),
        Swapped::Conflict,
        "nor one that read another"
    );
    assert_eq!(
        quota.used("w1").await.unwrap(),
        42,
        "a lost swap changes no usage"
    );
    assert_eq!(
        catalog
            .swap_image(&swap(Some(&first.key), Some(&second), 12, None))
            .await
            .unwrap(),
        Swapped::Done
    );
    assert_eq!(
        catalog.image("w1", "REPORT:e1").await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        quota.used("w1").await.unwrap(),
        30,
        "the shrink is given back in the swap"
    );
    assert_eq!(
        catalog
            .swap_image(&swap(Some(&second.key), None, 500, None))
            .await
            .unwrap(),
        Swapped::Done
    );
    assert_eq!(catalog.image("w1", "REPORT:e1").await.unwrap(), None);
    assert_eq!(quota.used("w1").await.unwrap(), 0, "never below zero");
}

async fn records_of_many_workspaces_are_kept_apart_and_all_listed(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let quota = backend.quota.as_ref();
    // Twenty workspaces: on a cluster their keys fall on every node. (Target keys are unique
    // across workspaces: receipt IDs are made by the server, other targets registered once.)
    for n in 0..20u64 {
        let workspace = format!("w{n}");
        quota.set_limit(&workspace, 1000).await.unwrap();
        quota
            .reserve(&workspace, "r", n + 1, TTL, 1000)
            .await
            .unwrap();
        let record = ImageRecord {
            workspace: workspace.clone(),
            key: format!("ws/{workspace}/receipts/x{n}/a.jpg"),
            ..image("", n + 1)
        };
        let done = catalog
            .swap_image(&Swap {
                key: &format!("RECEIPT:x{n}"),
                expected: None,
                image: Some(&record),
                workspace: &workspace,
                release: 0,
                reservation: Some(("r", n + 1)),
                default_limit: 1000,
                listing: None,
                event: None,
                index: None,
                unindex: None,
                refuse_exact: false,
            })
            .await
            .unwrap();
        assert_eq!(done, Swapped::Done, "{workspace}");
    }
    for n in 0..20u64 {
        let workspace = format!("w{n}");
        assert_eq!(quota.used(&workspace).await.unwrap(), n + 1);
        let target = format!("RECEIPT:x{n}");
        let record = catalog.image(&workspace, &target).await.unwrap().unwrap();
        assert_eq!(record.workspace, workspace);
    }
    assert_eq!(
        catalog.image("w2", "RECEIPT:x1").await.unwrap(),
        None,
        "a record is found only in its own workspace"
    );
    let mut listed: Vec<(String, u64)> = catalog
        .images()
        .await
        .unwrap()
        .into_iter()
        .map(|record| (record.workspace, record.size))
        .collect();
    listed.sort();
    let mut expected: Vec<(String, u64)> = (0..20u64).map(|n| (format!("w{n}"), n + 1)).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(quota.workspaces().await.unwrap().len(), 20);
}

/// Creates (or, with `remove`, deletes) the loose receipt `id` of `owner`, made at `at` ms,
/// with its listing entry.
async fn receipt(catalog: &dyn Catalog, owner: &str, id: &str, at: u64, remove: bool) {
    let entry = listing_entry(at, id);
    let record = ImageRecord {
        image_id: id.into(),
        key: format!("ws/w1/receipts/{id}/a.jpg"),
        owner: owner.into(),
        listed: Some(entry.clone()),
        ..image("", 1)
    };
    let done = catalog
        .swap_image(&Swap {
            key: &format!("RECEIPT:{id}"),
            expected: remove.then_some(record.key.as_str()),
            image: (!remove).then_some(&record),
            workspace: "w1",
            release: u64::from(remove),
            reservation: None,
            default_limit: 1000,
            listing: Some(if remove {
                Listing::Remove {
                    owner,
                    entry: &entry,
                }
            } else {
                Listing::Add {
                    owner,
                    entry: &entry,
                }
            }),
            event: None,
            index: None,
            unindex: None,
            refuse_exact: false,
        })
        .await
        .unwrap();
    assert_eq!(done, Swapped::Done);
}

async fn an_owners_list_pages_newest_first_and_follows_its_records(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    for n in 0..10u64 {
        receipt(catalog, "u1/odd name", &format!("r{n}"), 1_000 + n, false).await;
    }
    receipt(catalog, "u2", "other", 5_000, false).await;
    let page = catalog.listed("w1", "u1/odd name", None, 4).await.unwrap();
    assert_eq!(
        page,
        ["r9", "r8", "r7", "r6"]
            .iter()
            .enumerate()
            .map(|(i, id)| listing_entry(1_009 - i as u64, id))
            .collect::<Vec<_>>(),
        "newest first"
    );
    // A receipt added and one deleted between pages: no duplicate, no skip.
    receipt(catalog, "u1/odd name", "new", 2_000, false).await;
    receipt(catalog, "u1/odd name", "r5", 1_005, true).await;
    let next = catalog
        .listed("w1", "u1/odd name", Some(&page[3]), 4)
        .await
        .unwrap();
    assert_eq!(
        next,
        vec![
            listing_entry(1_004, "r4"),
            listing_entry(1_003, "r3"),
            listing_entry(1_002, "r2"),
            listing_entry(1_001, "r1"),
        ]
    );
    let last = catalog
        .listed("w1", "u1/odd name", Some(&next[3]), 4)
        .await
        .unwrap();
    assert_eq!(last, vec![listing_entry(1_000, "r0")]);
    assert_eq!(
        catalog.listed("w1", "u2", None, 10).await.unwrap(),
        vec![listing_entry(5_000, "other")],
        "each owner has a list of their own"
    );
    assert!(
        catalog
            .listed("w2", "u2", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let all = catalog.listings().await.unwrap();
    assert_eq!(all.len(), 11);
    let stray = Listed {
        workspace: "w1".into(),
        owner: "u2".into(),
        entry: listing_entry(1, "gone"),
    };
    catalog.set_listed(&stray, true).await.unwrap();
    assert_eq!(catalog.listings().await.unwrap().len(), 12);
    catalog.set_listed(&stray, false).await.unwrap();
    assert_eq!(catalog.listings().await.unwrap(), all);
}

async fn a_lapsed_reservation_is_charged_at_commit_only_if_it_still_fits(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let quota = backend.quota.as_ref();
    quota.set_limit("w1", 100).await.unwrap();
    quota
        .reserve("w1", "slow", 60, Duration::from_millis(50), 1000)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    quota.reserve("w1", "fast", 50, TTL, 1000).await.unwrap();
    let record = image("ws/w1/reports/e1/a.pdf", 60);
    assert_eq!(
        catalog
            .swap_image(&swap(None, Some(&record), 0, Some(("slow", 60))))
            .await
            .unwrap(),
        Swapped::QuotaExceeded {
            limit: 100,
            used: 50
        },
        "the limit holds even for a writer paused past its reservation"
    );
    assert_eq!(catalog.image("w1", "REPORT:e1").await.unwrap(), None);
    assert_eq!(quota.used("w1").await.unwrap(), 0);
}

async fn an_idempotency_result_is_kept_until_it_expires(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let done = IdempotencyRecord {
        upload_sha256: "ab".into(),
        target: "RECEIPT".into(),
        image: image("ws/w1/receipts/r1/x.jpg", 5),
    };
    catalog
        .put_idempotency("scope-1", &done, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(catalog.idempotency("scope-1").await.unwrap(), Some(done));
    assert_eq!(catalog.idempotency("scope-2").await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(catalog.idempotency("scope-1").await.unwrap(), None);
}

async fn a_held_lock_is_exclusive_and_only_its_holder_releases_it(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let ttl = Duration::from_secs(30);
    let first = catalog
        .try_lock("t", ttl)
        .await
        .unwrap()
        .expect("free lock");
    assert!(catalog.try_lock("t", ttl).await.unwrap().is_none());
    catalog.unlock("t", "someone-else").await.unwrap();
    assert!(catalog.try_lock("t", ttl).await.unwrap().is_none());
    catalog.unlock("t", &first).await.unwrap();
    assert!(catalog.try_lock("t", ttl).await.unwrap().is_some());
}

async fn a_lock_whose_holder_vanished_expires(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let _lost = catalog
        .try_lock("s", Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        catalog
            .try_lock("s", Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

fn session(id: &str, caller: &str, expires_ms: u64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        scope: "w1".into(),
        caller: caller.into(),
        version: 0,
        created_ms: 1,
        expires_ms,
        upload: SessionUpload {
            kind: "RECEIPT".into(),
            target_id: "r1".into(),
            target_workspace: String::new(),
            appends: false,
            workspace: "w1".into(),
            owner: caller.into(),
            content_type: "image/jpeg".into(),
            idempotency_key: String::new(),
            sha256: String::new(),
            file_name: String::new(),
            process_async: false,
        },
        length: Some(10),
        offset: 0,
        head: String::new(),
        digest: String::new(),
        staged: Default::default(),
        reservation: Some(("session-x".into(), 10)),
        client_metadata: "filename YQ==".into(),
        result: None,
    }
}

async fn sessions_are_capped_per_caller_and_change_only_from_the_version_read(backend: &Backend) {
    let catalog = &backend.catalog;
    let later = now_millis() + 60_000;
    assert!(
        catalog
            .create_session(&session("a1", "u1", later), 2)
            .await
            .unwrap()
    );
    assert!(
        catalog
            .create_session(&session("a2", "u1", later), 2)
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .create_session(&session("a3", "u1", later), 2)
            .await
            .unwrap()
    );
    assert!(catalog.session("w1", "a3").await.unwrap().is_none());
    assert!(
        catalog
            .create_session(&session("b1", "u2", later), 2)
            .await
            .unwrap()
    );
    let stored = catalog.session("w1", "a1").await.unwrap().unwrap();
    assert_eq!(stored, session("a1", "u1", later));
    assert!(
        catalog.session("w2", "a1").await.unwrap().is_none(),
        "kept per workspace"
    );
    // A change from the version read wins once; a second from the same version loses.
    let mut next = stored.clone();
    next.version = 1;
    next.offset = 5;
    assert!(catalog.update_session(&next, 0).await.unwrap());
    let mut stale = stored.clone();
    stale.version = 1;
    stale.offset = 7;
    assert!(!catalog.update_session(&stale, 0).await.unwrap());
    assert_eq!(
        catalog.session("w1", "a1").await.unwrap().unwrap().offset,
        5
    );
    // A session with its result stops counting as open; a removed one is gone.
    let mut done = next.clone();
    done.version = 2;
    done.result = Some(SessionResult {
        record: image("ws/w1/receipts/r1/x.jpg", 10),
        replayed: false,
    });
    assert!(catalog.update_session(&done, 1).await.unwrap());
    assert!(
        catalog
            .create_session(&session("a4", "u1", later), 2)
            .await
            .unwrap()
    );
    catalog
        .remove_session(&session("a2", "u1", later))
        .await
        .unwrap();
    assert!(catalog.session("w1", "a2").await.unwrap().is_none());
    assert!(
        !catalog
            .update_session(&session("a2", "u1", later), 0)
            .await
            .unwrap()
    );
    assert!(
        catalog
            .create_session(&session("a5", "u1", later), 2)
            .await
            .unwrap()
    );
}

async fn expired_sessions_are_found_oldest_first_and_stop_counting(backend: &Backend) {
    let catalog = &backend.catalog;
    let now = now_millis();
    assert!(
        catalog
            .create_session(&session("old", "u1", now + 300), 1)
            .await
            .unwrap()
    );
    assert!(
        catalog
            .create_session(&session("new", "u2", now + 60_000), 1)
            .await
            .unwrap()
    );
    assert!(
        catalog
            .expired_sessions(now_millis(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = catalog.expired_sessions(now_millis(), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["old"]
    );
    // An expired session no longer holds its caller's place.
    assert!(
        catalog
            .create_session(&session("next", "u1", now + 60_000), 1)
            .await
            .unwrap()
    );
    catalog.remove_session(&expired[0]).await.unwrap();
    assert!(
        catalog
            .expired_sessions(now_millis(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

fn job(id: &str) -> JobRecord {
    let now = now_millis();
    JobRecord {
        id: id.into(),
        workspace: "w1".into(),
        owner: "u1".into(),
        caller: "u1".into(),
        version: 1,
        created_ms: now,
        expires_ms: now + 3_600_000,
        status: JobStatus::Accepted,
        attempts: 0,
        source: format!("jobs/{id}/source"),
        content_type: "image/png".into(),
        file_name: String::new(),
        size: 10,
        sha256: "00".into(),
        reservation: Some((format!("job-{id}"), 10)),
        max_side: 2200,
        logs: Vec::new(),
        reason: String::new(),
        image: None,
    }
}

/// The job IDs of `taken`, sorted.
fn ids(taken: &[Delivery]) -> Vec<String> {
    let mut ids: Vec<String> = taken.iter().map(|d| d.job.clone()).collect();
    ids.sort();
    ids
}

async fn a_queued_job_goes_to_one_worker_until_its_lease_lapses(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let lease = Duration::from_millis(1500);
    let jobs = [job("j1"), job("j2"), job("j3")];
    for job in &jobs {
        catalog.enqueue_job(job, None).await.unwrap();
    }
    assert_eq!(catalog.queued_jobs().await.unwrap(), 3);
    assert_eq!(catalog.job("j2").await.unwrap().unwrap(), jobs[1]);
    assert!(catalog.job("nope").await.unwrap().is_none());
    // Two workers share the queue: each job goes to one of them.
    let first = catalog.take_jobs("a", 2, lease).await.unwrap();
    let second = catalog.take_jobs("b", 5, lease).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 1);
    let mut all = first.clone();
    all.extend(second.clone());
    assert_eq!(ids(&all), ["j1", "j2", "j3"]);
    assert!(catalog.take_jobs("b", 5, lease).await.unwrap().is_empty());
    // Worker a keeps one of its jobs by renewing, worker b its own; a's other job lapses and
    // goes to worker b.
    let kept = first[0].clone();
    let lapsed = first[1].clone();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(catalog.renew_job(&kept, "a", lease).await.unwrap());
        assert!(catalog.renew_job(&second[0], "b", lease).await.unwrap());
    }
    let retaken = catalog.take_jobs("b", 5, lease).await.unwrap();
    assert_eq!(
        ids(&retaken),
        [lapsed.job.as_str()],
        "only the lapsed job is taken again"
    );
    // Its first holder has lost it: it can no longer renew it.
    assert!(!catalog.renew_job(&lapsed, "a", lease).await.unwrap());
    assert!(catalog.renew_job(&retaken[0], "b", lease).await.unwrap());
    assert_eq!(catalog.queued_jobs().await.unwrap(), 3);
}

async fn a_job_changes_from_the_version_read_with_its_queue_entry(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let lease = Duration::from_secs(30);
    catalog.enqueue_job(&job("j1"), None).await.unwrap();
    catalog.enqueue_job(&job("j2"), None).await.unwrap();
    let taken = catalog.take_jobs("a", 2, lease).await.unwrap();
    let one = taken.iter().find(|d| d.job == "j1").unwrap().clone();
    let two = taken.iter().find(|d| d.job == "j2").unwrap().clone();
    // Held: the record changes, the entry stays with its worker.
    let mut processing = job("j1");
    processing.version = 2;
    processing.status = JobStatus::Processing;
    processing.attempts = 1;
    assert!(
        catalog
            .update_job(&processing, 1, JobNext::Hold(&one), None)
            .await
            .unwrap()
    );
    // A writer that read version 1 changes nothing.
    let mut stale = job("j1");
    stale.version = 2;
    stale.status = JobStatus::Failed;
    assert!(
        !catalog
            .update_job(&stale, 1, JobNext::Done(&one), None)
            .await
            .unwrap()
    );
    assert_eq!(catalog.job("j1").await.unwrap().unwrap(), processing);
    assert_eq!(catalog.queued_jobs().await.unwrap(), 2);
    // Given back for a retry: it is not taken before it is due, then it is.
    let mut retry = processing.clone();
    retry.version = 3;
    let due = now_millis() + 1500;
    assert!(
        catalog
            .update_job(&retry, 2, JobNext::Retry(&one, due), None)
            .await
            .unwrap()
    );
    assert_eq!(catalog.queued_jobs().await.unwrap(), 2);
    assert!(catalog.take_jobs("b", 5, lease).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let again = catalog.take_jobs("b", 5, lease).await.unwrap();
    assert_eq!(ids(&again), ["j1"]);
    // Done: the entry leaves the queue and the record keeps the final state.
    let mut done = retry.clone();
    done.version = 4;
    done.status = JobStatus::Processed;
    assert!(
        catalog
            .update_job(&done, 3, JobNext::Done(&again[0]), None)
            .await
            .unwrap()
    );
    let mut failed = job("j2");
    failed.version = 2;
    failed.status = JobStatus::Failed;
    failed.reason = "CORRUPT_IMAGE".into();
    assert!(
        catalog
            .update_job(&failed, 1, JobNext::Done(&two), None)
            .await
            .unwrap()
    );
    assert_eq!(catalog.queued_jobs().await.unwrap(), 0);
    assert_eq!(catalog.job("j1").await.unwrap().unwrap(), done);
    assert_eq!(catalog.job("j2").await.unwrap().unwrap(), failed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        catalog
            .take_jobs("c", 5, Duration::from_millis(1))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_event_is_written_with_its_change_and_only_with_it(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let quota = backend.quota.as_ref();
    assert!(catalog.outboxes().await.unwrap().is_empty());
    let first = image("ws/w1/expense-entries/e1/a.pdf", 4);
    let second = image("ws/w1/expense-entries/e1/b.pdf", 4);
    quota.reserve("w1", "r1", 4, TTL, 1000).await.unwrap();
    let with_event = |expected, image, reservation, event| Swap {
        event: Some(event),
        ..swap(expected, image, 0, reservation)
    };
    let done = catalog
        .swap_image(&with_event(None, Some(&first), Some(("r1", 4)), "e-1"))
        .await
        .unwrap();
    assert_eq!(done, Swapped::Done);
    // A writer that lost the compare-and-set writes no event.
    let lost = catalog
        .swap_image(&with_event(None, Some(&second), None, "e-lost"))
        .await
        .unwrap();
    assert_eq!(lost, Swapped::Conflict);
    let done = catalog
        .swap_image(&with_event(Some(&first.key), Some(&second), None, "e-2"))
        .await
        .unwrap();
    assert_eq!(done, Swapped::Done);
    // The job queue's changes write to their own outbox, also only when they happen.
    catalog.enqueue_job(&job("j1"), Some("s-1")).await.unwrap();
    let taken = catalog
        .take_jobs("a", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let mut processing = job("j1");
    processing.version = 2;
    processing.status = JobStatus::Processing;
    assert!(
        catalog
            .update_job(&processing, 1, JobNext::Hold(&taken[0]), Some("s-2"))
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .update_job(&processing, 1, JobNext::Hold(&taken[0]), Some("s-lost"))
            .await
            .unwrap()
    );
    assert_eq!(
        catalog.outboxes().await.unwrap(),
        ["w1", JOBS_OUTBOX],
        "outboxes with events"
    );
    assert_eq!(catalog.outbox_len().await.unwrap(), 4);
    let events = |entries: Vec<OutboxEntry>| -> Vec<String> {
        entries.into_iter().map(|e| e.event).collect()
    };
    assert_eq!(
        events(catalog.outbox("w1", 10).await.unwrap()),
        ["e-1", "e-2"]
    );
    assert_eq!(
        events(catalog.outbox(JOBS_OUTBOX, 10).await.unwrap()),
        ["s-1", "s-2"]
    );
    // Oldest first, a batch at a time; acknowledged events are gone.
    let head = catalog.outbox("w1", 1).await.unwrap();
    assert_eq!(events(head.clone()), ["e-1"]);
    catalog
        .ack_outbox("w1", &[head[0].entry.clone()])
        .await
        .unwrap();
    assert_eq!(events(catalog.outbox("w1", 10).await.unwrap()), ["e-2"]);
    let rest: Vec<String> = catalog
        .outbox("w1", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry)
        .collect();
    catalog.ack_outbox("w1", &rest).await.unwrap();
    assert!(catalog.outbox("w1", 10).await.unwrap().is_empty());
    assert_eq!(catalog.outbox_len().await.unwrap(), 2);
}

fn hook(id: &str) -> WebhookRecord {
    WebhookRecord {
        id: id.into(),
        workspace: "w1".into(),
        url: format!("https://example.com/{id}"),
        secret: "whsec_AAAA".into(),
        created_ms: 1,
    }
}

fn hook_delivery(event: &str) -> HookDelivery {
    HookDelivery {
        event_id: event.into(),
        event_type: "imaging.image.stored".into(),
        event: format!("{{\"id\":\"{event}\"}}"),
        created_ms: 1,
        attempts: 0,
        next_ms: 1,
        state: DeliveryState::Pending,
        last_code: 0,
        last_error: String::new(),
        finished_ms: 0,
    }
}

async fn a_webhooks_deliveries_settle_oldest_first_into_a_capped_log(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    assert!(catalog.put_webhook(&hook("h1"), 2).await.unwrap());
    assert!(catalog.put_webhook(&hook("h2"), 2).await.unwrap());
    assert!(
        !catalog.put_webhook(&hook("h3"), 2).await.unwrap(),
        "capped"
    );
    assert!(
        catalog.put_webhook(&hook("h1"), 2).await.unwrap(),
        "a known one is kept"
    );
    assert_eq!(catalog.webhooks("w1").await.unwrap().len(), 2);
    assert!(catalog.webhooks("w2").await.unwrap().is_empty());
    let all = [
        hook_delivery("e1"),
        hook_delivery("e2"),
        hook_delivery("e3"),
    ];
    assert_eq!(
        catalog.queue_deliveries("w1", "h1", &all, 2).await.unwrap(),
        2
    );
    assert_eq!(
        catalog.hook_queues(true).await.unwrap(),
        [("w1".to_owned(), "h1".to_owned())]
    );
    let head = catalog.delivery_head("w1", "h1").await.unwrap().unwrap();
    assert_eq!(head, all[0]);
    // An attempt that failed changes the oldest in place; another event's settlement nothing.
    let mut retried = head.clone();
    retried.attempts = 1;
    retried.last_code = 500;
    assert!(
        catalog
            .settle_delivery("w1", "h1", &retried, 1)
            .await
            .unwrap()
    );
    assert!(
        !catalog
            .settle_delivery("w1", "h1", &all[1], 1)
            .await
            .unwrap()
    );
    assert_eq!(
        catalog.delivery_head("w1", "h1").await.unwrap().unwrap(),
        retried
    );
    let mut delivered = retried.clone();
    delivered.state = DeliveryState::Delivered;
    assert!(
        catalog
            .settle_delivery("w1", "h1", &delivered, 1)
            .await
            .unwrap()
    );
    assert_eq!(
        catalog.deliveries("w1", "h1", 10).await.unwrap(),
        [all[1].clone(), delivered.clone()],
        "waiting first, then settled"
    );
    let mut failed = all[1].clone();
    failed.state = DeliveryState::Failed;
    assert!(
        catalog
            .settle_delivery("w1", "h1", &failed, 1)
            .await
            .unwrap()
    );
    assert_eq!(
        catalog.deliveries("w1", "h1", 10).await.unwrap(),
        [failed],
        "the log keeps the newest"
    );
    assert!(catalog.delivery_head("w1", "h1").await.unwrap().is_none());
    assert!(catalog.remove_webhook("w1", "h1").await.unwrap());
    assert!(!catalog.remove_webhook("w1", "h1").await.unwrap());
    assert!(catalog.deliveries("w1", "h1", 10).await.unwrap().is_empty());
    assert_eq!(catalog.webhooks("w1").await.unwrap(), [hook("h2")]);
}

fn dup(image_id: &str, sha256: &str, phash: &str) -> DupEntry {
    DupEntry {
        image_id: image_id.into(),
        sha256: sha256.into(),
        phash: Some(phash.into()),
        signature: "c2ln".into(),
        created_ms: 5,
    }
}

async fn the_duplicate_index_changes_with_its_records(backend: &Backend) {
    let catalog = backend.catalog.as_ref();
    let record = |id: &str| ImageRecord {
        image_id: id.into(),
        key: format!("ws/w1/receipts/{id}/a.jpg"),
        ..image("", 0)
    };
    let store = |id: &'static str, entry: DupEntry, refuse: bool| async move {
        let image = record(id);
        let target = format!("RECEIPT:{id}");
        catalog
            .swap_image(&Swap {
                key: &target,
                expected: None,
                image: Some(&image),
                workspace: "w1",
                release: 0,
                reservation: None,
                default_limit: 1000,
                listing: None,
                event: None,
                index: Some(&entry),
                unindex: None,
                refuse_exact: refuse,
            })
            .await
            .unwrap()
    };
    let a = dup("a", "aa", "0123456789abcdef");
    assert_eq!(store("a", a.clone(), false).await, Swapped::Done);
    // Found by its bytes, and by any quarter of its hash.
    let ids = |found: Vec<DupEntry>| -> Vec<String> {
        let mut ids: Vec<String> = found.into_iter().map(|e| e.image_id).collect();
        ids.sort();
        ids
    };
    let by_sha = catalog
        .duplicate_candidates("w1", "aa", None, 10)
        .await
        .unwrap();
    // Found by its bytes: its ID, the SHA-256 and its time (its entry is not read).
    assert_eq!(
        by_sha,
        [DupEntry {
            image_id: "a".to_owned(),
            created_ms: a.created_ms,
            ..DupEntry::probe("aa", None)
        }]
    );
    // Found by a quarter: its whole entry.
    let by_quarter = catalog
        .duplicate_candidates("w1", "zz", Some("ffffffff89abffff"), 10)
        .await
        .unwrap();
    assert_eq!(by_quarter, std::slice::from_ref(&a));
    // Found both ways: once, as an exact match.
    let both = catalog
        .duplicate_candidates("w1", "aa", Some("0123456789abcdef"), 10)
        .await
        .unwrap();
    assert_eq!(both, by_sha);
    assert!(
        catalog
            .duplicate_candidates("w1", "zz", Some("ffffffffffffffff"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        catalog
            .duplicate_candidates("w2", "aa", Some("0123456789abcdef"), 10)
            .await
            .unwrap()
            .is_empty(),
        "another workspace's index"
    );
    // A refusing change with the same bytes changes nothing.
    assert_eq!(
        store("b", dup("b", "aa", "0000000000000000"), true).await,
        Swapped::Duplicate
    );
    assert!(catalog.image("w1", "RECEIPT:b").await.unwrap().is_none());
    assert_eq!(
        store("b", dup("b", "aa", "0000000000000000"), false).await,
        Swapped::Done
    );
    assert_eq!(
        ids(catalog
            .duplicate_candidates("w1", "aa", None, 10)
            .await
            .unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        ids(catalog
            .duplicate_candidates("w1", "aa", None, 1)
            .await
            .unwrap())
        .len(),
        1,
        "the newest per key"
    );
    // Removing a record takes its entry out with it.
    let gone = record("a");
    let removed = catalog
        .swap_image(&Swap {
            key: "RECEIPT:a",
            expected: Some(&gone.key),
            image: None,
            workspace: "w1",
            release: 0,
            reservation: None,
            default_limit: 1000,
            listing: None,
            event: None,
            index: None,
            unindex: Some(&a),
            refuse_exact: false,
        })
        .await
        .unwrap();
    assert_eq!(removed, Swapped::Done);
    assert_eq!(
        ids(catalog
            .duplicate_candidates("w1", "aa", Some("0123456789abcdef"), 10)
            .await
            .unwrap()),
        ["b"]
    );
    // The workspace setting.
    assert!(!catalog.refuses_duplicates("w1").await.unwrap());
    catalog.set_refuse_duplicates("w1", true).await.unwrap();
    assert!(catalog.refuses_duplicates("w1").await.unwrap());
    assert!(!catalog.refuses_duplicates("w2").await.unwrap());
    catalog.set_refuse_duplicates("w1", false).await.unwrap();
    assert!(!catalog.refuses_duplicates("w1").await.unwrap());
}

async fn the_backend_answers_its_health_check(backend: &Backend) {
    backend.quota.check().await.unwrap();
}

macro_rules! state_contract {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                contract!(super::$backend =>
                    an_unregistered_workspace_has_no_limit_and_no_usage,
                    reservations_are_granted_up_to_the_limit_and_refused_past_it,
                    an_unregistered_workspace_is_held_to_the_default_limit,
                    a_retried_reservation_is_not_charged_twice,
                    a_released_or_lapsed_reservation_gives_its_bytes_back,
                    a_lapsed_reservation_is_charged_at_commit_only_if_it_still_fits,
                    usage_is_replaced_only_from_the_value_read,
                    a_target_registers_once_and_can_be_removed,
                    an_image_record_changes_only_from_the_record_the_writer_read,
                    records_of_many_workspaces_are_kept_apart_and_all_listed,
                    an_owners_list_pages_newest_first_and_follows_its_records,
                    an_idempotency_result_is_kept_until_it_expires,
                    a_held_lock_is_exclusive_and_only_its_holder_releases_it,
                    a_lock_whose_holder_vanished_expires,
                    the_backend_answers_its_health_check,
                    sessions_are_capped_per_caller_and_change_only_from_the_version_read,
                    expired_sessions_are_found_oldest_first_and_stop_counting,
                    a_queued_job_goes_to_one_worker_until_its_lease_lapses,
                    a_job_changes_from_the_version_read_with_its_queue_entry,
                    an_event_is_written_with_its_change_and_only_with_it,
                    a_webhooks_deliveries_settle_oldest_first_into_a_capped_log,
                    the_duplicate_index_changes_with_its_records,
                );
            }
        )*
    };
}

state_contract!(embedded, redis, cluster);

#[tokio::test]
async fn redis_data_of_the_earlier_key_layout_is_moved_once_and_stays_readable() {
    let server = RedisServer::start();
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let record = image("ws/w1/expense-entries/e1/a.pdf", 42);
    let _: () = ::redis::pipe()
        .set("imaging:limit:w1", 1000)
        .set("imaging:used:w1", 42)
        .hset("imaging:reservations:w1", "old", "7")
        .sadd("imaging:workspaces:all", "w1")
        .set(
            "imaging:image:EXPENSE_ENTRY:e1",
            serde_json::to_string(&record).unwrap(),
        )
        .query_async(&mut raw)
        .await
        .unwrap();
    let state = RedisState::new(&server.url(), "imaging:").unwrap();
    assert_eq!(state.migrate_layout().await.unwrap(), 5);
    assert_eq!(state.limit("w1").await.unwrap(), Some(1000));
    assert_eq!(state.used("w1").await.unwrap(), 42);
    assert_eq!(state.workspaces().await.unwrap(), vec!["w1".to_owned()]);
    assert_eq!(
        state.image("w1", "EXPENSE_ENTRY:e1").await.unwrap(),
        Some(record)
    );
    assert_eq!(
        state.migrate_layout().await.unwrap(),
        0,
        "moved once: a second start finds nothing to move"
    );
    assert_eq!(state.used("w1").await.unwrap(), 42, "never counted twice");
    let old: Vec<String> = ::redis::cmd("KEYS")
        .arg("imaging:used:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(old.is_empty(), "{old:?}");
}

#[tokio::test]
async fn expired_idempotency_results_are_removed_from_the_embedded_store_as_new_ones_come() {
    let dir = tempfile::tempdir().unwrap();
    let state = EmbeddedState::open(dir.path().join("state.redb")).unwrap();
    let done = |n: usize| IdempotencyRecord {
        upload_sha256: format!("{n:02x}"),
        target: "RECEIPT".into(),
        image: image("ws/w1/receipts/r1/x.jpg", 5),
    };
    for n in 0..100 {
        state
            .put_idempotency(&format!("old-{n}"), &done(n), Duration::from_secs(1))
            .await
            .unwrap();
    }
    assert_eq!(state.stored_idempotency_results().await.unwrap(), 100);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for n in 0..10 {
        state
            .put_idempotency(&format!("new-{n}"), &done(n), TTL)
            .await
            .unwrap();
    }
    assert_eq!(
        state.stored_idempotency_results().await.unwrap(),
        10,
        "only the live results are kept"
    );
    assert_eq!(state.idempotency("new-3").await.unwrap(), Some(done(3)));
    assert_eq!(state.idempotency("old-3").await.unwrap(), None);
}

#[tokio::test]
async fn the_embedded_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    {
        let state = EmbeddedState::open(&path).unwrap();
        state.set_limit("w1", 100).await.unwrap();
        assert!(state.replace_used("w1", 0, 30).await.unwrap());
    }
    let state = EmbeddedState::open(&path).unwrap();
    assert_eq!(state.used("w1").await.unwrap(), 30);
    assert_eq!(state.limit("w1").await.unwrap(), Some(100));
}

#[tokio::test]
async fn a_legacy_json_state_is_migrated_on_first_start_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let record = image("ws/w1/expense-entries/e1/x.pdf", 42);
    let legacy = serde_json::json!({
        "limits": {"w1": 1000},
        "used": {"w1": 42},
        "targets": {"EXPENSE_ENTRY:e1": {"workspace": "w1", "owner": "u1"}},
        "images": {"EXPENSE_ENTRY:e1": record},
        "idempotency": {},
    });
    std::fs::write(dir.path().join("state.json"), legacy.to_string()).unwrap();
    let state = EmbeddedState::open(dir.path().join("state.redb")).unwrap();
    assert_eq!(state.limit("w1").await.unwrap(), Some(1000));
    assert_eq!(state.used("w1").await.unwrap(), 42);
    assert_eq!(
        state.target("EXPENSE_ENTRY:e1").await.unwrap(),
        Some(TargetRecord {
            workspace: "w1".into(),
            owner: "u1".into()
        })
    );
    assert_eq!(
        state.image("w1", "EXPENSE_ENTRY:e1").await.unwrap(),
        Some(record)
    );
    assert!(!dir.path().join("state.json").exists());
    assert!(dir.path().join("state.json.migrated").exists());
}

#[tokio::test]
async fn a_damaged_database_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::write(&path, b"this is not a database, it is a few bytes of text").unwrap();
    let refused = EmbeddedState::open(&path).unwrap_err().to_string();
    assert!(refused.contains(&path.display().to_string()), "{refused}");
}
