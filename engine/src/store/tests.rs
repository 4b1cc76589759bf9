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
            idempotency_key: None,
            at: 10,
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
    };
    store.commit(batch).await.unwrap();
    drop(store);
    let store = Store::open(&dir.path().join("medic.db")).unwrap();
    let run = store.load_run("r1").await.unwrap();
    assert_eq!(run.summary.status, RunStatus::RollingBack);
    assert_eq!(run.state.stop, Some(Stop::Rollback));
    assert_eq!(run.state.steps[0], state.steps[0]);
    assert_eq!(run.next_seq, 3);
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
async fn a_run_id_in_use_is_refused_as_such_and_nothing_of_the_new_run_is_kept() {
    let (_dir, store, _) = fixture().await;
    let same_id = RunState::new("r1".into(), json!({}), 1);
    let err = store
        .create_run(NewRun {
            plan_name: "q",
            plan_hash: "h2",
            plan_source: "{}",
            step_ids: vec!["x"],
            state: &same_id,
            owner: None,
            idempotency_key: Some("k1"),
            at: 20,
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
            plan_hash: "h2",
            plan_source: "{}",
            step_ids: vec!["x"],
            state: &other,
            owner: None,
            idempotency_key: Some("k1"),
            at: 30,
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
