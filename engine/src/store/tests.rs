//! Store tests on real SQLite in a temp dir, never a mock.

use serde_json::json;

use super::*;
use crate::run::{Entry, RunState, RunStatus, StepStatus};

async fn fixture() -> (tempfile::TempDir, Store, RunState) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("medic.db")).unwrap();
    let state = RunState::new("r1".into(), json!({"n": 1}), 2);
    store
        .create_run(NewRun {
            plan_name: "p",
            plan_hash: "h1",
            plan_source: "{}",
            step_ids: vec!["a", "b"],
            state: &state,
            owner: Some("n1"),
            plan_version: None,
            submitted_by: Some("alice"),
            idempotency_key: None,
            at: 10,
            plugin_builds: vec![("probe".into(), "abc123".into())],
            guard: Default::default(),
        })
        .await
        .unwrap();
    (dir, store, state)
}

fn started(step: &str, attempt: u32) -> Entry {
    Entry::AttemptStarted {
        step: step.into(),
        attempt,
        undo: false,
        key: format!("r1/{step}/{attempt}"),
        params: json!({}),
    }
}

#[tokio::test]
async fn a_committed_batch_is_read_back_after_reopening() {
    let (dir, store, mut state) = fixture().await;
    state.steps[0].status = StepStatus::Succeeded;
    state.steps[0].attempt = 1;
    state.steps[0].output = Some(json!({"v": 7}));
    let batch = Batch {
        run_id: "r1".into(),
        run: Some((
            RunStatus::RollingBack,
            Some(Stop::Rollback),
            Some("why".into()),
        )),
        steps: vec![(0, "a".into(), state.steps[0].clone())],
        events: vec![
            (1, started("a", 1)),
            (
                2,
                Entry::AttemptSucceeded {
                    step: "a".into(),
                    attempt: 1,
                    undo: false,
                    output: json!({"v": 7}),
                },
            ),
        ],
        consumed: vec![],
        at: 20,
        notices: vec![],
    };
    store.commit(batch).await.unwrap();
    drop(store);
    let store = Store::open(&dir.path().join("medic.db")).unwrap();
    let run = store.load_run("r1").await.unwrap();
    assert_eq!(run.summary.status, RunStatus::RollingBack);
    assert_eq!(run.state.stop, Some(Stop::Rollback));
    assert_eq!(run.state.steps[0], state.steps[0]);
    assert_eq!(run.next_seq, 3);
    assert_eq!(
        run.plugin_builds.into_iter().collect::<Vec<_>>(),
        [("probe".to_string(), "abc123".to_string())],
        "the plugin builds the run started with"
    );
    let attempts = store.attempts("r1").await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].status.as_str(), attempts[0].output.clone()),
        ("succeeded", Some(json!({"v": 7})))
    );
    let events = store.events("r1", 1).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.seq, e.kind.as_str()))
            .collect::<Vec<_>>(),
        [(2, "attempt_succeeded")]
    );
}

#[tokio::test]
async fn a_failing_job_is_rolled_back_alone_and_the_group_still_commits() {
    let (_dir, store, _) = fixture().await;
    // Commit many batches at once so they share groups; one names a run that does not
    // exist and breaks a foreign key.
    let mut jobs = Vec::new();
    for seq in 1..=50i64 {
        let store = store.clone();
        let run_id = if seq == 25 { "ghost" } else { "r1" };
        jobs.push(tokio::spawn(async move {
            let events = vec![(
                seq,
                Entry::CancelRequested {
                    by: format!("op{seq}"),
                },
            )];
            store
                .commit(Batch {
                    run_id: run_id.into(),
                    events,
                    at: seq,
                    ..Batch::default()
                })
                .await
        }));
    }
    let mut results = Vec::new();
    for j in jobs {
        results.push(j.await.unwrap());
    }
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(failed, [25]);
    assert!(
        matches!(
            results[24],
            Err(Error::Sql {
                context: "appending events",
                ..
            })
        ),
        "{:?}",
        results[24]
    );
    let events = store.events("r1", 0).await.unwrap();
    assert_eq!(events.len(), 49);
}

/// Found by the chaos harness's locked-database fault: when a group's transaction
/// could not begin (another process held the lock), each job still ran, statement by
/// statement in autocommit, and its caller was told it failed: a write could land
/// half-way, and each statement waited out the busy timeout again. Now no job runs,
/// and while the lock stays, later writes fail fast with "database is locked".
#[tokio::test]
async fn a_locked_database_runs_no_job_and_fails_fast_until_the_lock_is_released() {
    let (dir, store, _) = fixture().await;
    let other = rusqlite::Connection::open(dir.path().join("medic.db")).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let first = store
        .writer
        .write(move |conn| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            conn.execute_batch("SELECT 1").map_err(sql("writing"))?;
            Ok(())
        })
        .await;
    let err = first.expect_err("the database is locked");
    assert_eq!(
        err.unavailable(),
        Some(
            "another process holds medic's database locked (database is locked): end it \
             (a backup or an open sqlite3 session?)"
        ),
        "{err}"
    );
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "the job must not run outside a transaction"
    );

    // The next write hears it at once instead of after another full busy timeout.
    let t0 = std::time::Instant::now();
    let second = store
        .commit(Batch {
            run_id: "r1".into(),
            events: vec![(1, started("a", 1))],
            at: 11,
            ..Batch::default()
        })
        .await;
    assert!(second.is_err());
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t0.elapsed()
    );

    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    store
        .commit(Batch {
            run_id: "r1".into(),
            events: vec![(1, started("a", 1))],
            at: 12,
            ..Batch::default()
        })
        .await
        .expect("writes work again once the lock is gone");
    assert_eq!(store.events("r1", 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn claim_only_takes_a_run_from_the_expected_owner_and_commands_are_consumed_once() {
    let (_dir, store, _) = fixture().await;
    assert!(!store.claim("r1", "n2", None).await.unwrap());
    assert!(store.claim("r1", "n2", Some("n1")).await.unwrap());
    assert!(!store.claim("r1", "n3", Some("n1")).await.unwrap());
    let id = store
        .post_command("r1", Some("a"), "approve", "alice", Some("ok"), 30)
        .await
        .unwrap();
    let open = store.open_commands("r1").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].kind.as_str(), open[0].by.as_str()),
        ("approve", "alice")
    );
    store
        .commit(Batch {
            run_id: "r1".into(),
            consumed: vec![id],
            ..Batch::default()
        })
        .await
        .unwrap();
    assert!(store.open_commands("r1").await.unwrap().is_empty());
    assert_eq!(store.unfinished_runs().await.unwrap().len(), 1);
    assert!(matches!(
        store.load_run("nope").await,
        Err(Error::RunNotFound(_))
    ));
}

#[tokio::test]
async fn a_run_keeps_who_submitted_it() {
    let (_dir, store, _) = fixture().await;
    let run = store.load_run("r1").await.unwrap();
    assert_eq!(run.summary.submitted_by.as_deref(), Some("alice"));
    let listed = store
        .list_runs(&RunFilter {
            limit: 10,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed[0].submitted_by.as_deref(), Some("alice"));
    let detail = store.detail("r1").await.unwrap();
    assert_eq!(detail["run"]["submitted_by"], "alice");
}

#[tokio::test]
async fn tokens_are_found_by_hash_unique_while_live_and_revoked_at_once() {
    let (_dir, store, _) = fixture().await;
    store
        .create_token("alice", "approver", "h-alice", 1)
        .await
        .unwrap();
    assert!(matches!(
        store.create_token("alice", "viewer", "h-other", 2).await,
        Err(Error::TokenExists(name)) if name == "alice"
    ));
    let found = store.live_token("h-alice").await.unwrap().unwrap();
    assert_eq!(
        (found.name.as_str(), found.role.as_str()),
        ("alice", "approver")
    );
    assert_eq!(store.live_token("h-other").await.unwrap(), None);

    store.touch_token("alice", 5).await.unwrap();
    store.revoke_token("alice", 6).await.unwrap();
    assert_eq!(store.live_token("h-alice").await.unwrap(), None);
    assert!(matches!(
        store.revoke_token("alice", 7).await,
        Err(Error::TokenNotFound(_))
    ));
    // The name is free again; the revoked row stays for the audit log's sake.
    store
        .create_token("alice", "viewer", "h-alice-2", 8)
        .await
        .unwrap();
    let tokens = store.tokens().await.unwrap();
    assert_eq!(
        tokens
            .iter()
            .map(|t| (t.role.as_str(), t.last_used_at, t.revoked_at))
            .collect::<Vec<_>>(),
        [("viewer", None, None), ("approver", Some(5), Some(6))]
    );
}

#[tokio::test]
async fn the_audit_log_reads_newest_first() {
    let (_dir, store, _) = fixture().await;
    for (i, status) in [401u16, 202].into_iter().enumerate() {
        store
            .record_audit(AuditEntry {
                at: i as i64,
                token: (status != 401).then(|| "bob".into()),
                role: (status != 401).then(|| "approver".into()),
                method: "POST".into(),
                path: "/v1/runs/r1/steps/a/approve".into(),
                run_id: Some("r1".into()),
                step_id: Some("a".into()),
                status,
                reason: None,
            })
            .await
            .unwrap();
    }
    let rows = store.audit(10).await.unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.status, r.token.as_deref()))
            .collect::<Vec<_>>(),
        [(202, Some("bob")), (401, None)]
    );
    assert_eq!(store.audit(1).await.unwrap().len(), 1);
}

fn register<'a>(name: &'a str, hash: &'a str, source: &'a str, at: Ms) -> RegisterPlan<'a> {
    RegisterPlan {
        name,
        hash,
        canonical: "{}",
        source,
        format: crate::plan::Format::Yaml,
        at,
        schedules: Vec::new(),
    }
}

#[tokio::test]
async fn plan_versions_are_numbered_per_name_and_identical_text_is_not_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("medic.db")).unwrap();
    let v1 = store
        .register_plan(register("p", "h1", "a: 1\n", 10))
        .await
        .unwrap();
    assert_eq!((v1.version, v1.created), (1, true));
    let again = store
        .register_plan(register("p", "h1", "a: 1\n", 20))
        .await
        .unwrap();
    assert_eq!(
        again,
        Registered {
            version: 1,
            created: false,
            created_at: 10
        }
    );
    // A comment changes the text but not the hash: still a new version, so what the
    // registry gives back is always what was registered.
    let v2 = store
        .register_plan(register("p", "h1", "a: 1 # why\n", 30))
        .await
        .unwrap();
    assert_eq!((v2.version, v2.created), (2, true));
    let v3 = store
        .register_plan(register("p", "h2", "a: 2\n", 40))
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    // Back to v1's text: identical to v1, but not to the latest, so a new version.
    let v4 = store
        .register_plan(register("p", "h1", "a: 1\n", 50))
        .await
        .unwrap();
    assert_eq!((v4.version, v4.created), (4, true));
    let other = store
        .register_plan(register("o", "h3", "b\n", 60))
        .await
        .unwrap();
    assert_eq!(other.version, 1, "versions count per name");

    let listed = store.plans().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|p| (p.name.as_str(), p.latest, p.versions, p.updated_at))
            .collect::<Vec<_>>(),
        [("o", 1, 1, 60), ("p", 4, 4, 50)]
    );
    let versions = store.plan_versions("p").await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.hash.as_str()))
            .collect::<Vec<_>>(),
        [(1, "h1"), (2, "h1"), (3, "h2"), (4, "h1")]
    );
    let latest = store.plan_version("p", None).await.unwrap();
    assert_eq!((latest.version, latest.source.as_str()), (4, "a: 1\n"));
    let v2 = store.plan_version("p", Some(2)).await.unwrap();
    assert_eq!(v2.source, "a: 1 # why\n");
    match store.plan_version("p", Some(9)).await {
        Err(Error::PlanNotFound(m)) => {
            assert_eq!(m, "plan `p` has no version 9; its versions are 1 to 4")
        }
        other => panic!("{other:?}"),
    }
    match store.plan_version("ghost", None).await {
        Err(Error::PlanNotFound(m)) => assert_eq!(m, "no plan named `ghost` is registered"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.plan_versions("ghost").await,
        Err(Error::PlanNotFound(_))
    ));
}

#[tokio::test]
async fn runs_are_listed_by_status_plan_and_creation_time_and_counted_by_status() {
    let (_dir, store, _) = fixture().await;
    for (id, plan, version, at) in [("r2", "p", Some(1), 20), ("r3", "q", None, 30)] {
        let state = RunState::new(id.into(), json!({}), 1);
        store
            .create_run(NewRun {
                plan_name: plan,
                plan_version: version,
                plan_hash: "h1",
                plan_source: "{}",
                step_ids: vec!["a"],
                state: &state,
                owner: None,
                submitted_by: None,
                idempotency_key: None,
                at,
                plugin_builds: Vec::new(),
                guard: Default::default(),
            })
            .await
            .unwrap();
    }
    store
        .commit(Batch {
            run_id: "r3".into(),
            run: Some((RunStatus::Succeeded, None, None)),
            at: 31,
            ..Batch::default()
        })
        .await
        .unwrap();
    let ids = |filter: RunFilter| {
        let store = store.clone();
        async move {
            store
                .list_runs(&RunFilter {
                    limit: 10,
                    ..filter
                })
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(RunFilter::default()).await, ["r3", "r2", "r1"]);
    assert_eq!(
        ids(RunFilter {
            plan: Some("p".into()),
            ..Default::default()
        })
        .await,
        ["r2", "r1"]
    );
    assert_eq!(
        ids(RunFilter {
            status: Some(RunStatus::Running),
            ..Default::default()
        })
        .await,
        ["r2", "r1"]
    );
    assert_eq!(
        ids(RunFilter {
            since: Some(20),
            until: Some(30),
            ..Default::default()
        })
        .await,
        ["r2"],
        "since is inclusive, until exclusive"
    );
    let r2 = store.load_run("r2").await.unwrap().summary;
    assert_eq!((r2.plan_name.as_str(), r2.plan_version), ("p", Some(1)));
    let counts = store.count_runs().await.unwrap();
    assert_eq!(counts.len(), RunStatus::ALL.len(), "zeros included");
    assert!(counts.contains(&(RunStatus::Running, 2)));
    assert!(counts.contains(&(RunStatus::Succeeded, 1)));
    assert!(counts.contains(&(RunStatus::Failed, 0)));
}

#[tokio::test]
async fn a_run_id_in_use_is_refused_as_such_and_nothing_of_the_new_run_is_kept() {
    let (_dir, store, _) = fixture().await;
    let same_id = RunState::new("r1".into(), json!({}), 1);
    let err = store
        .create_run(NewRun {
            plan_name: "q",
            plan_version: None,
            plan_hash: "h2",
            plan_source: "{}",
            step_ids: vec!["x"],
            state: &same_id,
            owner: None,
            submitted_by: None,
            idempotency_key: Some("k1"),
            at: 20,
            plugin_builds: Vec::new(),
            guard: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RunIdTaken(id) if id == "r1"),
        "{err:?}"
    );
    // The job was rolled back alone: the key is free and r1 is as it was.
    let other = RunState::new("r2".into(), json!({}), 1);
    let (id, created) = store
        .create_run(NewRun {
            plan_name: "q",
            plan_version: None,
            plan_hash: "h2",
            plan_source: "{}",
            step_ids: vec!["x"],
            state: &other,
            owner: None,
            submitted_by: None,
            idempotency_key: Some("k1"),
            at: 30,
            plugin_builds: Vec::new(),
            guard: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!((id.as_str(), created), ("r2", true));
    let r1 = store.load_run("r1").await.unwrap();
    assert_eq!(
        (r1.summary.plan_hash.as_str(), r1.state.steps.len()),
        ("h1", 2)
    );
}

mod schedules {
    use super::*;

    fn new_run<'a>(state: &'a RunState) -> NewRun<'a> {
        NewRun {
            plan_name: "compact",
            plan_hash: "h2",
            plan_source: "{}",
            step_ids: vec!["a"],
            state,
            owner: Some("n1"),
            plan_version: Some(1),
            submitted_by: Some("schedule:nightly"),
            idempotency_key: None,
            at: 1_000,
            plugin_builds: Vec::new(),
            guard: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_due_time_fires_once_with_its_run_in_the_same_transaction() {
        let (dir, store, _) = fixture().await;
        let id = store
            .create_schedule("nightly", &json!({"cron": "0 3 * * *"}), true, 0, 5)
            .await
            .unwrap();
        let first = RunState::new("s1".into(), json!({}), 1);
        let run = store
            .fire(NewFire {
                schedule_id: id,
                schedule: "nightly",
                due: 900,
                fire_at: 950,
                run: new_run(&first),
            })
            .await
            .unwrap();
        assert_eq!(run, "s1");
        // Another process, or a retry, fires the same due time: refused, no run.
        let second = RunState::new("s2".into(), json!({}), 1);
        let again = store
            .fire(NewFire {
                schedule_id: id,
                schedule: "nightly",
                due: 900,
                fire_at: 950,
                run: new_run(&second),
            })
            .await;
        assert!(
            matches!(again, Err(Error::AlreadyFired { due: 900, .. })),
            "{again:?}"
        );
        assert!(matches!(
            store.load_run("s2").await,
            Err(Error::RunNotFound(_))
        ));
        drop(store);
        let store = Store::open(&dir.path().join("medic.db")).unwrap();
        let row = store.schedule("nightly").await.unwrap();
        assert_eq!(row.after, 900);
        assert_eq!(row.last_run.as_deref(), Some("s1"));
        assert!(row.last_run_going);
        let run = store.load_run("s1").await.unwrap();
        assert_eq!(
            run.summary.submitted_by.as_deref(),
            Some("schedule:nightly")
        );
        let history = store.schedule_history(id, 10).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(
            (history[0].outcome.as_str(), history[0].fire_at),
            ("fired", Some(950))
        );
    }

    #[tokio::test]
    async fn a_failed_run_insert_leaves_no_fire() {
        let (_dir, store, _) = fixture().await;
        let id = store
            .create_schedule("n", &json!({}), true, 0, 5)
            .await
            .unwrap();
        // "r1" exists already (the fixture's run): the run insert fails.
        let taken = RunState::new("r1".into(), json!({}), 1);
        let out = store
            .fire(NewFire {
                schedule_id: id,
                schedule: "n",
                due: 900,
                fire_at: 900,
                run: new_run(&taken),
            })
            .await;
        assert!(matches!(out, Err(Error::RunIdTaken(_))), "{out:?}");
        assert!(store.schedule_history(id, 10).await.unwrap().is_empty());
        assert_eq!(store.schedule("n").await.unwrap().after, 0);
    }

    #[tokio::test]
    async fn skips_pause_resume_and_delete() {
        let (_dir, store, _) = fixture().await;
        let id = store
            .create_schedule("n", &json!({}), true, 0, 5)
            .await
            .unwrap();
        assert!(matches!(
            store.create_schedule("n", &json!({}), true, 0, 5).await,
            Err(Error::ScheduleExists(_))
        ));
        store
            .skip_due_times(id, vec![(100, "missed"), (200, "missed")], 200, 300)
            .await
            .unwrap();
        assert_eq!(store.schedule("n").await.unwrap().after, 200);
        assert_eq!(
            store.schedule_history(id, 10).await.unwrap()[0].outcome,
            "missed"
        );
        store.set_schedule_enabled("n", false, 400).await.unwrap();
        assert!(!store.schedule("n").await.unwrap().enabled);
        store.set_schedule_enabled("n", true, 5_000).await.unwrap();
        let row = store.schedule("n").await.unwrap();
        assert!(row.enabled);
        assert_eq!(row.after, 5_000, "due times while paused do not fire");
        assert_eq!(store.schedules().await.unwrap().len(), 1);
        store.delete_schedule("n").await.unwrap();
        assert!(matches!(
            store.schedule("n").await,
            Err(Error::ScheduleNotFound(_))
        ));
        assert!(matches!(
            store.delete_schedule("n").await,
            Err(Error::ScheduleNotFound(_))
        ));
    }

    /// A plan's declared schedules follow its newest version: created with it,
    /// pointed at each new version (cursor, history and an operator's pause kept),
    /// removed when a version drops them; never deleted alone, never taking a name
    /// another schedule holds, and a refused registration leaves nothing behind.
    #[tokio::test]
    async fn declared_schedules_follow_the_plans_newest_version() {
        let (_dir, store, _) = fixture().await;
        let spec = |cron: &str, enabled: bool| json!({"name": "nightly", "plan": "p", "cron": cron, "enabled": enabled});
        let with = |source: &'static str, at: Ms, schedules: Vec<(String, serde_json::Value)>| {
            RegisterPlan {
                schedules,
                ..register("p", source, source, at)
            }
        };
        store
            .register_plan(with(
                "v1",
                10,
                vec![("nightly".into(), spec("0 3 * * *", true))],
            ))
            .await
            .unwrap();
        let row = store.schedule("nightly").await.unwrap();
        assert_eq!(row.declared_by.as_deref(), Some("p"));
        assert_eq!(row.spec["plan"], "p@1");
        assert_eq!((row.enabled, row.after), (true, 10));
        let id = row.id;
        store
            .skip_due_times(id, vec![(20, "missed")], 20, 21)
            .await
            .unwrap();

        // The operator pauses it; v2 changes the cron only: the pause and cursor stay.
        store
            .set_schedule_enabled("nightly", false, 30)
            .await
            .unwrap();
        store
            .register_plan(with(
                "v2",
                40,
                vec![("nightly".into(), spec("0 4 * * *", true))],
            ))
            .await
            .unwrap();
        let row = store.schedule("nightly").await.unwrap();
        assert_eq!((row.id, row.after, row.enabled), (id, 20, false));
        assert_eq!(
            (row.spec["plan"].as_str(), row.spec["cron"].as_str()),
            (Some("p@2"), Some("0 4 * * *"))
        );
        assert_eq!(store.schedule_history(id, 10).await.unwrap().len(), 1);

        // Not deletable on its own.
        let e = store.delete_schedule("nightly").await.unwrap_err();
        assert!(matches!(e, Error::ScheduleDeclared { .. }), "{e:?}");
        assert!(e.to_string().contains("declared by plan `p`"), "{e}");

        // A name held by a schedule created over the API refuses the whole version.
        store
            .create_schedule("weekly", &json!({}), true, 0, 50)
            .await
            .unwrap();
        let e = store
            .register_plan(with(
                "v3",
                60,
                vec![
                    ("nightly".into(), spec("0 4 * * *", true)),
                    (
                        "weekly".into(),
                        json!({"name": "weekly", "plan": "p", "cron": "0 5 * * SUN"}),
                    ),
                ],
            ))
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("plan `p` declares schedule `weekly`")
                && e.to_string().contains("created over the API"),
            "{e}"
        );
        assert_eq!(
            store.plan_versions("p").await.unwrap().len(),
            2,
            "the refused version is not kept"
        );

        // A version that drops the schedule removes it.
        store.register_plan(with("v3", 70, vec![])).await.unwrap();
        assert!(matches!(
            store.schedule("nightly").await,
            Err(Error::ScheduleNotFound(_))
        ));
        assert!(
            store.schedule("weekly").await.is_ok(),
            "another's schedule is untouched"
        );
    }
}
