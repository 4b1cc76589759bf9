//! Faults beyond a kill (issue 8), each against the real `medic serve`: a full disk
//! under its database, the database locked by another process, a target that hangs,
//! a slow target, a plugin that traps mid-call. For each: medic reports it clearly,
//! keeps serving other runs, and carries on once the fault clears. Each test prints a
//! `fault ...:` line with its figures (RELIABILITY.md quotes them).

use std::time::{Duration, Instant};

use medic_tests::chaos::integrity;
use medic_tests::faults::{DatabaseLock, HangingTarget, SlowRelay, SmallDisk};
use medic_tests::{CounterTarget, Medic, Server};
use serde_json::{Value, json};

/// A plan of counter steps on `target`, one after the other, after a read-only sleep
/// of `sleep_ms`: each step adds 1 to counter `TAG-N`.
fn counters(target: &str, tag: &str, steps: usize, sleep_ms: u64) -> Value {
    let mut yaml = format!(
        "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {{ name: fault-{tag} }}\n\
         plugins:\n  probe:\n    use: probe@0.1\n    grants: {{ connect: [\"{target}\"] }}\n\
         steps:\n  - {{ id: wait, uses: probe/sleep, with: {{ ms: {sleep_ms} }} }}\n"
    );
    for i in 0..steps {
        let needs = if i == 0 {
            "wait".to_string()
        } else {
            format!("s{}", i - 1)
        };
        yaml.push_str(&format!(
            "  - {{ id: s{i}, needs: [{needs}], uses: probe/counter-add, \
             with: {{ address: \"{target}\", counter: {tag}-{i}, amount: 1 }} }}\n"
        ));
    }
    json!({ "plan": yaml })
}

fn submit(server: &Server, body: &Value) -> String {
    let (status, _, created) = server.post("/v1/runs", &[], body);
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("run id").to_owned()
}

fn wait_end(server: &Server, run: &str) -> Value {
    server.wait_run(run, "the run to end", |v| {
        let s = v["run"]["status"].as_str()?;
        matches!(s, "succeeded" | "failed" | "rolled_back" | "cancelled").then(|| v.clone())
    })
}

fn assert_counted_once(target: &CounterTarget, tag: &str, steps: usize) {
    for i in 0..steps {
        assert_eq!(target.value(&format!("{tag}-{i}")), 1, "{tag}-{i}");
    }
    target.assert_each_key_applied_once();
}

/// Disk full under the database: submissions are refused with a clear 503 that
/// names the cause and stores nothing, reads go on, the run that was going when the
/// disk filled waits instead of dying, and everything carries on once space is freed.
#[test]
fn a_full_disk_refuses_new_work_clearly_and_medic_carries_on_once_space_is_freed() {
    let medic = Medic::new();
    let disk = SmallDisk::mount(&medic.data_dir(), "24m");
    let target = CounterTarget::start();
    let server = Server::open(&medic);
    let going = submit(&server, &counters(&target.address(), "going", 3, 1500));
    server.wait_step(&going, "wait", "running");

    let filled = disk.fill();
    // The WAL may still have room for a few commits: submit until the disk says no.
    let started = Instant::now();
    let mut accepted = Vec::new();
    let refused = loop {
        let (status, _, body) =
            server.post("/v1/runs", &[], &counters(&target.address(), "more", 1, 0));
        match status {
            201 => accepted.push(body["id"].as_str().unwrap().to_owned()),
            _ => break (status, body),
        }
        assert!(
            accepted.len() < 500,
            "500 runs fitted on a full disk ({filled} bytes of filler)"
        );
    };
    let detected = started.elapsed();
    assert_eq!(refused.0, 503, "{}", refused.1);
    let detail = refused.1["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("disk is full") && detail.contains("nothing of this request was stored"),
        "{detail}"
    );
    // Reads still work, and the refused submission left nothing.
    let (status, list) = server.get_json("/v1/runs?limit=1000");
    assert_eq!(status, 200, "{list}");
    let listed = list["runs"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, 1 + accepted.len(), "{list}");
    // Let the going run reach a commit it cannot make.
    std::thread::sleep(Duration::from_millis(2000));
    assert!(
        server.running.stderr().contains("disk is full"),
        "{}",
        server.running.stderr()
    );

    disk.clear();
    let cleared = Instant::now();
    let view = wait_end(&server, &going);
    let resumed = cleared.elapsed();
    assert_eq!(
        view["run"]["status"],
        "succeeded",
        "{}",
        server.describe(&going)
    );
    assert_counted_once(&target, "going", 3);
    for run in &accepted {
        assert_eq!(wait_end(&server, run)["run"]["status"], "succeeded");
    }
    let after = submit(&server, &counters(&target.address(), "after", 1, 0));
    assert_eq!(wait_end(&server, &after)["run"]["status"], "succeeded");
    assert_eq!(
        integrity(&medic.data_dir().join("medic.db")).as_deref(),
        Ok("ok")
    );
    eprintln!(
        "fault disk-full: refused after {} more submissions in {:?} with 503; the run in flight \
         finished {:?} after space was freed; integrity ok",
        accepted.len(),
        detected,
        resumed
    );
}

/// Another process holds medic's database locked: submissions wait out the busy
/// timeout, then get a clear 503; reads go on; the run in flight finishes once the
/// lock is released.
#[test]
fn a_locked_database_is_reported_and_medic_carries_on_once_it_is_released() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::open(&medic);
    let going = submit(&server, &counters(&target.address(), "going", 2, 1000));
    server.wait_step(&going, "wait", "running");

    let lock = DatabaseLock::take(&medic.data_dir().join("medic.db"));
    let started = Instant::now();
    let (status, _, body) = server.post("/v1/runs", &[], &counters(&target.address(), "x", 1, 0));
    let detected = started.elapsed();
    assert_eq!(status, 503, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("database is locked") && detail.contains("another process"),
        "{detail}"
    );
    let (status, _) = server.get_json(&format!("/v1/runs/{going}"));
    assert_eq!(status, 200, "reads go on under the lock");

    lock.release();
    let released = Instant::now();
    let view = wait_end(&server, &going);
    let resumed = released.elapsed();
    assert_eq!(
        view["run"]["status"],
        "succeeded",
        "{}",
        server.describe(&going)
    );
    assert_counted_once(&target, "going", 2);
    let (status, list) = server.get_json("/v1/runs?limit=100");
    assert_eq!(status, 200);
    assert_eq!(
        list["runs"].as_array().map_or(0, Vec::len),
        1,
        "the refused submission stored nothing: {list}"
    );
    let after = submit(&server, &counters(&target.address(), "after", 1, 0));
    assert_eq!(wait_end(&server, &after)["run"]["status"], "succeeded");
    eprintln!(
        "fault database-locked: submission refused with 503 after {detected:?} (the busy timeout); \
         the run in flight finished {resumed:?} after the lock was released"
    );
}

/// A target that accepts and never answers: each attempt ends at the step's timeout
/// with an error that says so, other runs are not held up, and the step succeeds on
/// the retry after the target heals.
#[test]
fn a_hanging_target_times_out_clearly_and_the_step_succeeds_once_it_heals() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let hang = HangingTarget::start();
    let server = Server::open(&medic);
    let plan = format!(
        "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {{ name: fault-hang }}\n\
         plugins:\n  probe:\n    use: probe@0.1\n    grants: {{ connect: [\"{}\"] }}\n\
         steps:\n  - id: health\n    uses: probe/http-check\n    with: {{ url: \"{}\" }}\n    \
         timeout: 1s\n    retry: {{ attempts: 20, backoff: fixed, initial: 200ms, jitter: false }}\n",
        hang.address,
        hang.url()
    );
    let started = Instant::now();
    let hung = submit(&server, &json!({ "plan": plan }));
    // Meanwhile another run goes through untouched.
    let other = submit(&server, &counters(&target.address(), "other", 3, 0));
    let view = wait_end(&server, &other);
    let other_took = started.elapsed();
    assert_eq!(view["run"]["status"], "succeeded");
    assert_counted_once(&target, "other", 3);

    let failures = server.wait_run(&hung, "two timed-out attempts", |v| {
        let errors: Vec<String> = v["attempts"]
            .as_array()?
            .iter()
            .filter_map(|a| a["error"].as_str().map(str::to_owned))
            .collect();
        (errors.len() >= 2).then_some(errors)
    });
    for e in &failures {
        assert!(e.contains("timed out after 1s"), "{e}");
    }
    hang.heal();
    let healed = Instant::now();
    let view = wait_end(&server, &hung);
    assert_eq!(
        view["run"]["status"],
        "succeeded",
        "{}",
        server.describe(&hung)
    );
    eprintln!(
        "fault hanging-target: each attempt ended at its 1s timeout ({} before healing); another \
         run finished meanwhile in {other_took:?}; the step succeeded {:?} after the target healed",
        failures.len(),
        healed.elapsed()
    );
}

/// A slow network path (200 ms per chunk each way): steps take longer, nothing is
/// applied twice, and runs to a healthy target are not slowed.
#[test]
fn a_slow_target_slows_only_its_own_steps() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let relay = SlowRelay::start(&target.address(), Duration::from_millis(200));
    let server = Server::open(&medic);
    let started = Instant::now();
    let slow = submit(&server, &counters(&relay.address, "slow", 3, 0));
    let fast = submit(&server, &counters(&target.address(), "fast", 3, 0));
    let fast_view = wait_end(&server, &fast);
    let fast_took = started.elapsed();
    let slow_view = wait_end(&server, &slow);
    let slow_took = started.elapsed();
    assert_eq!(fast_view["run"]["status"], "succeeded");
    assert_eq!(
        slow_view["run"]["status"],
        "succeeded",
        "{}",
        server.describe(&slow)
    );
    for step in slow_view["steps"].as_array().unwrap() {
        if step["id"] == "wait" {
            continue;
        }
        let took = step["finished_at"].as_i64().unwrap() - step["started_at"].as_i64().unwrap();
        assert!(
            took >= 400,
            "{}: {took} ms through a 200 ms relay",
            step["id"]
        );
    }
    assert!(fast_took < slow_took, "{fast_took:?} vs {slow_took:?}");
    assert_counted_once(&target, "slow", 3);
    assert_counted_once(&target, "fast", 3);
    eprintln!(
        "fault slow-target: 3 steps through a 200 ms/chunk relay took {slow_took:?}; 3 steps to the \
         healthy target beside them {fast_took:?}"
    );
}

/// A plugin that traps mid-call: the step fails with the trap's message, the process
/// and its other runs go on, and the next call of the same plugin works.
#[test]
fn a_trapping_plugin_fails_its_step_and_nothing_else() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::open(&medic);
    let plan = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: fault-trap }\n\
                plugins: { probe: { use: probe@0.1 } }\nsteps:\n  \
                - { id: boom, uses: probe/crash, with: { message: \"index out of bounds in the plugin\" } }\n";
    let trapped = submit(&server, &json!({ "plan": plan }));
    let other = submit(&server, &counters(&target.address(), "other", 3, 200));
    let view = wait_end(&server, &trapped);
    assert_eq!(view["run"]["status"], "failed");
    let error = view["steps"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("index out of bounds in the plugin") && error.contains("trap"),
        "{error}"
    );
    assert_eq!(wait_end(&server, &other)["run"]["status"], "succeeded");
    assert_counted_once(&target, "other", 3);
    let again = submit(&server, &counters(&target.address(), "again", 1, 0));
    assert_eq!(wait_end(&server, &again)["run"]["status"], "succeeded");
    eprintln!("fault plugin-trap: step failed with `{error}`; other runs unaffected");
}
