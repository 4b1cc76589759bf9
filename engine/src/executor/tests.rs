//! Executor tests with an in-process `Invoker` and a real SQLite store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::plugin::{ActionInfo, Manifest, Observation};

/// Records calls; `hang` makes calls to those steps never return (a crash mid-call).
#[derive(Default)]
struct Fake {
    store: Mutex<Option<Store>>,
    calls: Mutex<Vec<(String, u32, String)>>,
    /// Attempt status found in the store at the moment each call began.
    seen: Mutex<Vec<String>>,
    hang: Mutex<Vec<String>>,
    observe: Mutex<HashMap<String, Observation>>,
}

impl Invoker for Fake {
    async fn manifest(
        &self,
        _plugin: &str,
        _version: &str,
    ) -> Result<Arc<Manifest>, plugin::Error> {
        let action = |name: &str, effect| ActionInfo {
            name: name.into(),
            description: String::new(),
            params_schema: json!({}),
            output_schema: json!({}),
            effect,
            inverse: None,
        };
        Ok(Arc::new(Manifest {
            name: "probe".into(),
            version: "0.1.0".into(),
            description: String::new(),
            actions: vec![
                action("noop", EffectClass::ReadOnly),
                action("counter-add", EffectClass::Mutating),
            ],
            sha256: String::new(),
        }))
    }

    async fn invoke(&self, call: Call) -> Result<Value, plugin::Error> {
        let store = self.store.lock().unwrap().clone().expect("store set");
        let attempts = store.attempts(&call.ctx.run_id).await.expect("attempts");
        let row = attempts
            .iter()
            .find(|a| a.key == call.ctx.idempotency_key)
            .map(|a| a.status.clone())
            .unwrap_or_else(|| "missing".into());
        self.seen.lock().unwrap().push(row);
        self.calls.lock().unwrap().push((
            call.ctx.step_id.clone(),
            call.ctx.attempt,
            call.action.clone(),
        ));
        if self.hang.lock().unwrap().contains(&call.ctx.step_id) {
            std::future::pending::<()>().await;
        }
        Ok(json!({ "step": call.ctx.step_id }))
    }

    async fn observe(&self, call: Call) -> Result<Observation, plugin::Error> {
        Ok(self
            .observe
            .lock()
            .unwrap()
            .get(&call.ctx.step_id)
            .cloned()
            .unwrap_or(Observation::NotDone))
    }
}

fn plan(steps: &str) -> Plan {
    let text = format!(
        "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {{ name: t }}\nplugins:\n  p: {{ use: probe@0.1 }}\nsteps:\n{steps}"
    );
    plan::parse("t.yaml", &text, plan::Format::Yaml, None).unwrap_or_else(|d| panic!("{d}"))
}

fn executor(dir: &std::path::Path, fake: &Arc<Fake>) -> Executor<Fake> {
    let store = Store::open(&dir.join("medic.db")).unwrap();
    *fake.store.lock().unwrap() = Some(store.clone());
    let mut exec = Executor::new(
        store,
        fake.clone(),
        Arc::new(SystemClock),
        Node::register(dir).unwrap(),
    );
    Arc::get_mut(&mut exec.inner)
        .expect("sole owner")
        .inbox_poll = Duration::from_millis(10);
    exec
}

const FAN: &str = "
  - { id: a, uses: p/noop }
  - { id: b, uses: p/counter-add, needs: [a] }
  - { id: c, uses: p/noop, needs: [a] }
  - { id: d, uses: p/noop, needs: [b, c] }
";

#[tokio::test]
async fn every_attempt_is_durably_started_before_its_plugin_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let exec = executor(dir.path(), &fake);
    let run = exec.create(&plan(FAN), json!({})).await.unwrap();
    assert_eq!(exec.drive(&run).await.unwrap(), RunStatus::Succeeded);
    assert_eq!(*fake.seen.lock().unwrap(), vec!["started"; 4]);
    let attempts = exec.store().attempts(&run).await.unwrap();
    assert!(
        attempts.iter().all(|a| a.status == "succeeded"),
        "{attempts:?}"
    );
    // Event sequence numbers have no gaps or duplicates.
    let seqs: Vec<i64> = exec
        .store()
        .events(&run, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

/// Starts a run of FAN whose call to `step` never returns, and once that call is in
/// flight drops the driver and the executor, as a crash of medic would.
async fn crash_mid_call(step: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    fake.hang.lock().unwrap().push(step.into());
    let exec = executor(dir.path(), &fake);
    let run = exec.create(&plan(FAN), json!({})).await.unwrap();
    let driving = tokio::spawn({
        let (exec, run) = (exec.clone(), run.clone());
        async move { exec.drive(&run).await }
    });
    for _ in 0..2000 {
        if fake.calls.lock().unwrap().iter().any(|c| c.0 == step) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        fake.calls.lock().unwrap().iter().any(|c| c.0 == step),
        "{step} was never called"
    );
    driving.abort();
    // Wait for the abort so the dead "process" no longer holds its node lock.
    let _ = driving.await;
    drop(exec);
    (dir, run)
}

#[tokio::test]
async fn after_a_crash_mid_call_the_attempt_is_observed_not_repeated() {
    let (dir, run) = crash_mid_call("b").await;

    // The effect landed before the crash: observe says so, and b is not called again.
    let fake2 = Arc::new(Fake::default());
    fake2
        .observe
        .lock()
        .unwrap()
        .insert("b".into(), Observation::Done(json!({"v": 1})));
    let exec2 = executor(dir.path(), &fake2);
    exec2.claim(&run).await.unwrap();
    assert_eq!(exec2.drive(&run).await.unwrap(), RunStatus::Succeeded);
    let again: Vec<String> = fake2
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.0.clone())
        .collect();
    assert!(!again.contains(&"b".to_string()), "{again:?}");
    let steps = exec2.store().steps(&run).await.unwrap();
    assert_eq!(steps[1].1.output, Some(json!({"v": 1})));
}

#[tokio::test]
async fn a_mutating_attempt_whose_effect_is_missing_is_held_then_retried_on_command() {
    let (dir, run) = crash_mid_call("b").await;

    let fake2 = Arc::new(Fake::default());
    let exec2 = executor(dir.path(), &fake2);
    exec2.claim(&run).await.unwrap();
    assert_eq!(exec2.drive(&run).await.unwrap(), RunStatus::Held);
    assert!(fake2.calls.lock().unwrap().is_empty());
    exec2
        .store()
        .post_command(&run, Some("b"), "retry", "ops", None, 0)
        .await
        .unwrap();
    assert_eq!(exec2.drive(&run).await.unwrap(), RunStatus::Succeeded);
    let calls = fake2.calls.lock().unwrap().clone();
    assert_eq!(calls[0], ("b".to_string(), 2, "counter-add".to_string()));
}

#[tokio::test]
async fn an_approval_left_in_the_inbox_by_another_process_moves_the_run_on() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let exec = executor(dir.path(), &fake);
    let p = plan(
        "  - { id: gate, approval: { prompt: go?, timeout: 1h } }\n  - { id: after, uses: p/noop, needs: [gate] }\n",
    );
    let run = exec.create(&p, json!({})).await.unwrap();
    let driving = tokio::spawn({
        let (exec, run) = (exec.clone(), run.clone());
        async move { exec.drive(&run).await }
    });
    loop {
        let steps = exec.store().steps(&run).await.unwrap();
        if steps[0].1.status == run::StepStatus::Approval {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    exec.store()
        .post_command(&run, Some("gate"), "approve", "alice", None, 0)
        .await
        .unwrap();
    assert_eq!(driving.await.unwrap().unwrap(), RunStatus::Succeeded);
    assert!(exec.store().open_commands(&run).await.unwrap().is_empty());
    // The approval's 1-hour timeout timer ended with the run instead of lingering.
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

#[tokio::test]
async fn a_run_owned_by_a_live_process_cannot_be_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let exec = executor(dir.path(), &fake);
    let run = exec.create(&plan(FAN), json!({})).await.unwrap();
    let other = executor(dir.path(), &Arc::new(Fake::default()));
    assert!(matches!(other.claim(&run).await, Err(Error::Owned { .. })));
    drop(exec);
    other.claim(&run).await.unwrap();
}

#[tokio::test]
async fn a_command_posted_through_this_process_is_applied_at_once_not_at_the_next_poll() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let mut exec = executor(dir.path(), &fake);
    // A poll so slow that only the bell can explain a prompt decision.
    Arc::get_mut(&mut exec.inner)
        .expect("sole owner")
        .inbox_poll = Duration::from_secs(3600);
    let p = plan(
        "  - { id: gate, approval: { prompt: go?, timeout: 1h } }\n  - { id: after, uses: p/noop, needs: [gate] }\n",
    );
    let run = exec.create(&p, json!({})).await.unwrap();
    let driving = tokio::spawn({
        let (exec, run) = (exec.clone(), run.clone());
        async move { exec.drive(&run).await }
    });
    loop {
        let steps = exec.store().steps(&run).await.unwrap();
        if steps[0].1.status == run::StepStatus::Approval {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    post_command(
        exec.store(),
        &run,
        Some("gate"),
        CommandKind::Approve,
        "alice",
        None,
        0,
    )
    .await
    .unwrap();
    exec.ring(&run);
    let done = tokio::time::timeout(Duration::from_secs(10), driving)
        .await
        .expect("the rung driver applies the approval without waiting for its hourly poll");
    assert_eq!(done.unwrap().unwrap(), RunStatus::Succeeded);
    // The bell came down with the driver.
    assert!(exec.inner.bells.lock().unwrap().is_empty());
}
