//! The lock table's logic on real SQLite: all-or-nothing grants, shared vs
//! exclusive, refusal rolls back, oldest waiter first, release in the terminal
//! commit, survival across a reopen, caps and the breaker.

use serde_json::json;

use super::super::{Batch, Error, NewRun, Store};
use super::{Acquired, Caps, Guard};
use crate::plan::{LockMode, OnBusy};
use crate::run::{RunState, RunStatus};

fn guard(locks: &[(&str, LockMode)], on_busy: OnBusy) -> Guard {
    Guard {
        locks: locks.iter().map(|(n, m)| (n.to_string(), *m)).collect(),
        on_busy,
        caps: Caps::default(),
        breaker: None,
    }
}

async fn create(store: &Store, id: &str, plan: &str, g: Guard, at: i64) -> Result<String, Error> {
    let state = RunState::new(id.into(), json!({}), 1);
    store
        .create_run(NewRun {
            plan_name: plan,
            plan_hash: "h",
            plan_source: "{}",
            step_ids: vec!["a"],
            state: &state,
            owner: None,
            plan_version: None,
            submitted_by: None,
            idempotency_key: None,
            at,
            plugin_builds: Vec::new(),
            guard: g,
        })
        .await
        .map(|(id, _)| id)
}

async fn status(store: &Store, id: &str) -> RunStatus {
    store.load_run(id).await.unwrap().summary.status
}

async fn end(store: &Store, id: &str, st: RunStatus, at: i64) {
    store
        .commit(Batch {
            run_id: id.into(),
            run: Some((st, None, None)),
            at,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn db() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("medic.db")).unwrap();
    (dir, store)
}

use LockMode::{Exclusive, Shared};

#[tokio::test]
async fn an_exclusive_lock_makes_the_second_run_wait_until_the_first_ends() {
    let (_d, store) = db();
    create(
        &store,
        "r1",
        "p",
        guard(&[("mysql/a", Exclusive)], OnBusy::Wait),
        1,
    )
    .await
    .unwrap();
    assert_eq!(status(&store, "r1").await, RunStatus::Running);
    create(
        &store,
        "r2",
        "p",
        guard(&[("mysql/a", Exclusive)], OnBusy::Wait),
        2,
    )
    .await
    .unwrap();
    let r2 = store.load_run("r2").await.unwrap().summary;
    assert_eq!(r2.status, RunStatus::Waiting);
    assert!(r2.reason.unwrap().contains("held by run r1"));
    let again = store.acquire("r2", Caps::default(), 3).await.unwrap();
    assert!(
        matches!(again, Acquired::Waiting(ref w) if w.contains("r1")),
        "{again:?}"
    );
    // The terminal commit of r1 releases it; r2 then gets it.
    end(&store, "r1", RunStatus::Cancelled, 4).await;
    assert_eq!(
        store.acquire("r2", Caps::default(), 5).await.unwrap(),
        Acquired::Running
    );
    assert_eq!(status(&store, "r2").await, RunStatus::Running);
    let locks = store.locks(None).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(
        (locks[0].run_id.as_str(), locks[0].state.as_str()),
        ("r2", "held")
    );
}

#[tokio::test]
async fn refuse_creates_nothing_and_shared_locks_coexist() {
    let (_d, store) = db();
    create(
        &store,
        "r1",
        "p",
        guard(&[("dc/x", Shared)], OnBusy::Refuse),
        1,
    )
    .await
    .unwrap();
    create(
        &store,
        "r2",
        "p",
        guard(&[("dc/x", Shared)], OnBusy::Refuse),
        2,
    )
    .await
    .unwrap();
    assert_eq!(status(&store, "r2").await, RunStatus::Running);
    let e = create(
        &store,
        "r3",
        "p",
        guard(&[("dc/x", Exclusive)], OnBusy::Refuse),
        3,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::Busy { .. }), "{e}");
    assert!(e.to_string().contains("lock `dc/x`"), "{e}");
    assert!(matches!(
        store.load_run("r3").await,
        Err(Error::RunNotFound(_))
    ));
    assert_eq!(store.locks(Some("dc/x")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn locks_are_all_or_nothing_and_the_oldest_waiter_goes_first() {
    let (_d, store) = db();
    create(
        &store,
        "r1",
        "p",
        guard(&[("b", Exclusive)], OnBusy::Wait),
        1,
    )
    .await
    .unwrap();
    // r2 wants a and b: b is held, so it holds neither (a stays free for nobody
    // younger that conflicts with r2 either).
    create(
        &store,
        "r2",
        "p",
        guard(&[("a", Exclusive), ("b", Exclusive)], OnBusy::Wait),
        2,
    )
    .await
    .unwrap();
    assert_eq!(status(&store, "r2").await, RunStatus::Waiting);
    let held: Vec<_> = store.locks(Some("a")).await.unwrap();
    assert_eq!(held[0].state, "waiting", "r2 holds nothing while it waits");
    create(
        &store,
        "r3",
        "p",
        guard(&[("a", Exclusive)], OnBusy::Wait),
        3,
    )
    .await
    .unwrap();
    let r3 = store.load_run("r3").await.unwrap().summary;
    assert_eq!(
        r3.status,
        RunStatus::Waiting,
        "r3 may not jump the older r2"
    );
    assert!(r3.reason.unwrap().contains("awaited first by run r2"));
    end(&store, "r1", RunStatus::Succeeded, 4).await;
    assert_eq!(
        store.acquire("r3", Caps::default(), 5).await.unwrap(),
        Acquired::Waiting("lock `a` (exclusive) is awaited first by run r2 (exclusive)".into())
    );
    assert_eq!(
        store.acquire("r2", Caps::default(), 5).await.unwrap(),
        Acquired::Running
    );
    end(&store, "r2", RunStatus::RolledBack, 6).await;
    assert_eq!(
        store.acquire("r3", Caps::default(), 7).await.unwrap(),
        Acquired::Running
    );
}

#[tokio::test]
async fn lock_state_survives_a_reopen_and_cancel_of_a_waiter_releases_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("medic.db");
    {
        let store = Store::open(&path).unwrap();
        create(
            &store,
            "r1",
            "p",
            guard(&[("x", Exclusive)], OnBusy::Wait),
            1,
        )
        .await
        .unwrap();
        create(
            &store,
            "r2",
            "p",
            guard(&[("x", Exclusive)], OnBusy::Wait),
            2,
        )
        .await
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let locks = store.locks(Some("x")).await.unwrap();
    let states: Vec<(&str, &str)> = locks
        .iter()
        .map(|l| (l.run_id.as_str(), l.state.as_str()))
        .collect();
    assert_eq!(states, [("r1", "held"), ("r2", "waiting")]);
    let cmd = store
        .post_command("r2", None, "cancel", "bob", None, 3)
        .await
        .unwrap();
    assert!(store.cancel_waiting("r2", cmd, "bob", 4).await.unwrap());
    assert_eq!(status(&store, "r2").await, RunStatus::Cancelled);
    assert!(store.open_commands("r2").await.unwrap().is_empty());
    assert_eq!(store.locks(Some("x")).await.unwrap().len(), 1);
    // A force release frees it for the next run.
    assert_eq!(
        store.force_release("x").await.unwrap(),
        vec!["r1".to_string()]
    );
    create(
        &store,
        "r3",
        "p",
        guard(&[("x", Exclusive)], OnBusy::Refuse),
        5,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn caps_count_distinct_targets_concurrently_and_per_hour() {
    let (_d, store) = db();
    let mut g = guard(&[("t1", Exclusive)], OnBusy::Wait);
    g.caps.plan_concurrent = Some(1);
    g.caps.global_per_hour = Some(2);
    create(&store, "r1", "p", g.clone(), 1).await.unwrap();
    let mut g2 = g.clone();
    g2.locks = vec![("t2".into(), Exclusive)];
    create(&store, "r2", "p", g2.clone(), 2).await.unwrap();
    let r2 = store.load_run("r2").await.unwrap().summary;
    assert_eq!(r2.status, RunStatus::Waiting);
    assert!(
        r2.reason
            .unwrap()
            .contains("limits.concurrent_targets is 1")
    );
    end(&store, "r1", RunStatus::Succeeded, 3).await;
    assert_eq!(
        store.acquire("r2", g.caps, 4).await.unwrap(),
        Acquired::Running
    );
    end(&store, "r2", RunStatus::Succeeded, 5).await;
    // Two targets started on within the hour: a third waits, a repeat does not.
    let mut g3 = g.clone();
    g3.locks = vec![("t3".into(), Exclusive)];
    create(&store, "r3", "p", g3, 6).await.unwrap();
    assert_eq!(status(&store, "r3").await, RunStatus::Waiting);
    create(
        &store,
        "r4",
        "q",
        guard(&[("t1", Exclusive)], OnBusy::Wait),
        7,
    )
    .await
    .unwrap();
    assert_eq!(status(&store, "r4").await, RunStatus::Running);
    // A run that alone exceeds a cap is refused even under `wait`.
    let mut big = g.clone();
    big.locks = vec![("u1".into(), Exclusive), ("u2".into(), Exclusive)];
    let e = create(&store, "r5", "p", big, 8).await.unwrap_err();
    assert!(e.to_string().contains("can never start"), "{e}");
}

#[tokio::test]
async fn the_breaker_opens_at_n_failures_in_the_window_and_reset_closes_it() {
    let (_d, store) = db();
    let mut g = guard(&[], OnBusy::Wait);
    g.breaker = Some((2, 1_000));
    create(&store, "r1", "p", g.clone(), 1).await.unwrap();
    end(&store, "r1", RunStatus::Failed, 10).await;
    create(&store, "r2", "p", g.clone(), 2_000).await.unwrap();
    // r1's failure is out of the window when r2 fails: still closed.
    end(&store, "r2", RunStatus::Failed, 2_010).await;
    create(&store, "r3", "p", g.clone(), 2_020).await.unwrap();
    end(&store, "r3", RunStatus::RolledBack, 2_030).await;
    let e = create(&store, "r4", "p", g.clone(), 2_040)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BreakerOpen { failed: 2, .. }), "{e}");
    assert!(e.to_string().contains("medic breaker reset p"), "{e}");
    // Stays open after the window: only a reset closes it.
    assert!(create(&store, "r5", "p", g.clone(), 99_000).await.is_err());
    let row = store
        .reset_breaker("p", "admin", "fixed the disk", 99_001)
        .await
        .unwrap();
    assert_eq!(
        (row.state.as_str(), row.reset_reason.as_deref()),
        ("closed", Some("fixed the disk"))
    );
    create(&store, "r6", "p", g, 99_002).await.unwrap();
    assert!(matches!(
        store.reset_breaker("nope", "a", "b", 1).await,
        Err(Error::BreakerNotFound(_))
    ));
}
