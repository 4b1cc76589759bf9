//! The `ceph` plugin and `plans/ceph/osd-maintenance.yaml` against a real Ceph 16
//! cluster (tests/scripts/ceph.sh: one mon, one mgr with the dashboard's REST API,
//! one memstore OSD; shared by these tests one at a time), through `medic run` of
//! the real binary. Every effect is checked in the cluster's own state, read with the
//! `ceph` CLI: flags in `ceph osd dump`, OSDs up/in, PG states. Also medic killed
//! mid-maintenance and resumed. Bad input: a flag that does not exist, an unknown
//! OSD id, a wrong password, no credentials, a stopped mgr.

use std::time::Duration;

use medic_tests::{Ceph, CephLease, Finished, Medic, RunView, repo_root, sequential_plan};
use serde_json::{Value, json};

use crate::exit;

const SECRET: &str = "ceph-dashboard";

/// A medic whose secrets dir holds the dashboard password as `ceph-dashboard`.
fn medic_for(ceph: &Ceph) -> Medic {
    let medic = Medic::new();
    std::fs::create_dir_all(medic.data_dir().join("secrets")).unwrap();
    std::fs::write(
        medic.data_dir().join("secrets").join(SECRET),
        format!("{}\n", ceph.password()),
    )
    .unwrap();
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        "secrets_dir = \"secrets\"\n",
    )
    .unwrap();
    medic
}

/// The params every action takes to reach the cluster, plus `extra`.
fn with(ceph: &Ceph, extra: Value) -> Value {
    let mut w = json!({"api": ceph.api, "password_secret": SECRET});
    w.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    w
}

/// Runs a plan of `steps` (one after the other) with the ceph plugin granted the API
/// origin and the password secret.
fn run_steps(medic: &Medic, ceph: &Ceph, steps: Value) -> (Finished, RunView) {
    let plan = sequential_plan(
        "ceph-test",
        json!({"ceph": {"use": "ceph@0.1", "grants": {"http": [ceph.api], "secrets": [SECRET]}}}),
        steps,
    );
    let path = medic.write("plan.json", &serde_json::to_string_pretty(&plan).unwrap());
    let out = medic.run_with_timeout(["run".as_ref(), path.as_os_str()], Duration::from_secs(240));
    let view = medic.show(&run_id(&out));
    (out, view)
}

fn run_id(out: &Finished) -> String {
    out.stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `run ID started` line\n{out}"))
        .to_string()
}

fn step(id: &str, action: &str, with: Value) -> Value {
    json!({"id": id, "uses": format!("ceph/{action}"), "with": with})
}

fn has(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f == flag)
}

/// The maintenance plan, started in the background for osd.0.
fn start_maintenance(
    medic: &Medic,
    ceph: &CephLease,
    extra: &[&str],
) -> (medic_tests::Running, String) {
    let plan = repo_root().join("plans/ceph/osd-maintenance.yaml");
    let mut args: Vec<String> = vec![
        "run".into(),
        plan.display().to_string(),
        "-p".into(),
        format!("api={}", ceph.api),
        "-p".into(),
        "osd=0".into(),
    ];
    for p in extra {
        args.push("-p".into());
        args.push(p.to_string());
    }
    let mut running = medic.spawn(args);
    let run = running.run_id();
    (running, run)
}

fn wait_for_approval(medic: &Medic, run: &str, step: &str, running: &medic_tests::Running) {
    medic.wait_for_run(
        run,
        Duration::from_secs(120),
        &format!("step `{step}` waiting for approval"),
        |view| (view.step_status(step) == Some("approval")).then_some(()),
        || running.describe(),
    );
}

#[test]
fn osd_maintenance_plan_holds_noout_while_the_osd_restarts_and_unsets_it_after() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);
    let objects = ceph.objects();
    assert_eq!(objects.len(), 16, "{objects:?}");
    let (running, run) = start_maintenance(&medic, &ceph, &["flags=[\"noout\",\"norebalance\"]"]);

    wait_for_approval(&medic, &run, "ok-to-stop", &running);
    let flags = ceph.flags();
    assert!(
        has(&flags, "noout") && has(&flags, "norebalance"),
        "the flags are set before the operator is asked: {flags:?}"
    );
    // What the approval asks the operator to run answers on this cluster.
    let prompt = medic.show(&run).json.to_string();
    assert!(prompt.contains("ceph osd ok-to-stop 0"), "{prompt}");
    medic
        .run(["approve", &run, "ok-to-stop"])
        .expect_code(0, || running.describe());

    // The operator's restart: the OSD goes down (noout keeps it in), then comes back.
    wait_for_approval(&medic, &run, "restart", &running);
    ceph.stop_osd();
    medic_tests::poll_until(
        Duration::from_secs(30),
        "osd.0 down (and, with noout, still in)",
        || (ceph.osd(0) == (false, true)).then_some(()),
        || ceph.ceph(&["osd", "tree"]),
    );
    medic
        .run(["approve", &run, "restart", "--comment", "restarted osd.0"])
        .expect_code(0, || running.describe());
    // wait-clean keeps waiting while the OSD is down...
    wait_for_osd_down_progress(&medic, &run, &running);
    assert_eq!(medic.show(&run).step_status("wait-clean"), Some("running"));
    assert!(has(&ceph.flags(), "noout"));
    // ...and finishes once it is back.
    ceph.start();
    let out = running.wait(Duration::from_secs(240));
    let view = medic.show(&run);
    out.expect_code(exit::SUCCEEDED, || view.pretty());

    let flags = ceph.flags();
    assert!(
        !has(&flags, "noout") && !has(&flags, "norebalance"),
        "unset after the maintenance: {flags:?}"
    );
    assert_eq!(ceph.osd(0), (true, true));
    assert!(ceph.all_clean());
    assert_eq!(ceph.objects(), objects, "the OSD came back with its data");
    let after = &view.step("status-after").output;
    assert_eq!(after["pgs"], after["pgs_active_clean"], "{after}");
    assert_eq!(after["osds_up"], 1, "{after}");
    assert_eq!(
        view.step("set-flags").output["added"],
        json!(["noout", "norebalance"])
    );
    let last = view.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["kind"] == "step_progress" && e["step"] == "wait-clean")
        .expect("wait-clean reported progress")
        .clone();
    assert_eq!(last["data"]["done"], last["data"]["total"], "{last}");
}

/// Waits until `wait-clean` has reported that osd.0 is down.
fn wait_for_osd_down_progress(medic: &Medic, run: &str, running: &medic_tests::Running) {
    medic.wait_for_run(
        run,
        Duration::from_secs(60),
        "wait-clean reporting progress while osd.0 is down",
        |view| {
            view.json["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| {
                    e["kind"] == "step_progress"
                        && e["step"] == "wait-clean"
                        && e["data"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("waiting for osd [0] to be up"))
                })
                .then_some(())
        },
        || running.describe(),
    );
}

#[test]
fn medic_killed_while_the_osd_is_down_resumes_and_finishes_the_maintenance() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);
    let (running, run) = start_maintenance(&medic, &ceph, &[]);
    wait_for_approval(&medic, &run, "ok-to-stop", &running);
    medic
        .run(["approve", &run, "ok-to-stop"])
        .expect_code(0, || running.describe());
    wait_for_approval(&medic, &run, "restart", &running);
    ceph.stop_osd();
    medic
        .run(["approve", &run, "restart"])
        .expect_code(0, || running.describe());
    wait_for_osd_down_progress(&medic, &run, &running);

    // medic dies mid-wait; the cluster keeps noout, as the run left it.
    running.kill();
    assert!(has(&ceph.flags(), "noout"));
    ceph.start();
    let out = medic.run_with_timeout(["resume", &run], Duration::from_secs(240));
    let view = medic.show(&run);
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    // The attempt in flight at the crash was looked at again (`observed`) and, being
    // read-only, called again: it waited for the OSD and succeeded.
    let events = view.json["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "observed" && e["step"] == "wait-clean"),
        "{}",
        view.pretty()
    );
    assert_eq!(view.step("wait-clean").status, "succeeded");
    assert_eq!(view.step("set-flags").attempt, 1, "{}", view.pretty());
    assert!(!has(&ceph.flags(), "noout"));
    assert_eq!(ceph.osd(0), (true, true));
}

#[test]
fn a_maintenance_whose_osd_does_not_come_back_rolls_back_and_unsets_the_flags() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);
    let (running, run) = start_maintenance(&medic, &ceph, &["clean_deadline_s=6"]);
    wait_for_approval(&medic, &run, "ok-to-stop", &running);
    assert!(has(&ceph.flags(), "noout"));
    medic
        .run(["approve", &run, "ok-to-stop"])
        .expect_code(0, || running.describe());
    wait_for_approval(&medic, &run, "restart", &running);
    // The OSD is stopped and not started again: the wait gives up after 6 s.
    ceph.stop_osd();
    medic
        .run(["approve", &run, "restart"])
        .expect_code(0, || running.describe());
    let out = running.wait(Duration::from_secs(120));
    let view = medic.show(&run);
    out.expect_code(exit::ROLLED_BACK, || view.pretty());

    let failed = view.failures("wait-clean");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].2.contains("after 6 s") && failed[0].2.contains("waiting for osd [0] to be up"),
        "{failed:?}"
    );
    assert_eq!(view.step("set-flags").status, "undone", "{}", view.pretty());
    let flags = ceph.flags();
    assert!(!has(&flags, "noout"), "the undo unset noout: {flags:?}");
    assert!(!ceph.osd(0).0, "the OSD is still down");
}

#[test]
fn rejecting_ok_to_stop_unsets_the_flags() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);
    let (running, run) = start_maintenance(&medic, &ceph, &[]);
    wait_for_approval(&medic, &run, "ok-to-stop", &running);
    assert!(has(&ceph.flags(), "noout"));
    medic
        .run([
            "approve",
            &run,
            "ok-to-stop",
            "--reject",
            "--comment",
            "not ok to stop",
        ])
        .expect_code(0, || running.describe());
    let out = running.wait(Duration::from_secs(60));
    let view = medic.show(&run);
    out.expect_code(exit::ROLLED_BACK, || view.pretty());
    assert!(!has(&ceph.flags(), "noout"));
    assert_ne!(
        view.step("restart").status,
        "succeeded",
        "{}",
        view.pretty()
    );
}

#[test]
fn flags_osd_out_and_in_and_status_match_the_ceph_cli() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);

    // `ceph status` before the run, whose status step comes before its flags.
    let cli = ceph.ceph_json(&["status"]);
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([
            step("status", "status", with(&ceph, json!({}))),
            step("health", "health", with(&ceph, json!({}))),
            step(
                "set",
                "set-flags",
                with(&ceph, json!({"flags": ["noout", "nodeep-scrub"]}))
            ),
            step(
                "again",
                "set-flags",
                with(&ceph, json!({"flags": ["noout"]}))
            ),
            step("out", "osd-out", with(&ceph, json!({"osd": 0}))),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let status = &view.step("status").output;
    assert_eq!(status["health"], cli["health"]["status"], "{status}");
    assert_eq!(status["pgs"], cli["pgmap"]["num_pgs"], "{status}");
    assert_eq!(status["osds"], cli["osdmap"]["num_osds"], "{status}");
    assert_eq!(status["quorum"], cli["quorum"].as_array().unwrap().len());
    assert_eq!(view.step("health").output["status"], "HEALTH_OK");
    assert_eq!(
        view.step("set").output["added"],
        json!(["noout", "nodeep-scrub"])
    );
    assert_eq!(view.step("again").output["added"], json!([]));
    assert_eq!(view.step("again").output["already_set"], json!(["noout"]));
    let flags = ceph.flags();
    assert!(
        has(&flags, "noout") && has(&flags, "nodeep-scrub"),
        "{flags:?}"
    );
    assert_eq!(ceph.osd(0), (true, false), "osd.0 marked out");
    assert_eq!(view.step("out").output["was_in"], true);

    // With flags set the cluster warns; health names the check and its step fails
    // unless the check is ignored.
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([
            step("out-again", "osd-out", with(&ceph, json!({"osd": 0}))),
            step(
                "warned",
                "health",
                with(&ceph, json!({"require_ok": false}))
            ),
            step("in", "osd-in", with(&ceph, json!({"osd": 0}))),
            step(
                "clean",
                "wait-clean",
                with(&ceph, json!({"deadline_s": 120, "osds_up": [0]}))
            ),
            step(
                "ignored",
                "health",
                with(&ceph, json!({"ignore_checks": ["OSDMAP_FLAGS"]}))
            ),
            step(
                "unset",
                "unset-flags",
                with(&ceph, json!({"flags": ["noout", "nodeep-scrub"]}))
            ),
            step("required", "health", with(&ceph, json!({}))),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert_eq!(view.step("out-again").output["was_in"], false, "idempotent");
    let warned = &view.step("warned").output;
    assert_eq!(warned["status"], "HEALTH_WARN", "{warned}");
    assert!(
        warned["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "OSDMAP_FLAGS"),
        "{warned}"
    );
    assert_eq!(view.step("in").output["in"], true);
    assert_eq!(
        view.step("unset").output["removed"],
        json!(["noout", "nodeep-scrub"])
    );
    assert_eq!(ceph.osd(0), (true, true));
    let flags = ceph.flags();
    assert!(
        !has(&flags, "noout") && !has(&flags, "nodeep-scrub"),
        "{flags:?}"
    );
    assert!(ceph.all_clean());

    // Health required while a flag is set: the step fails naming the check.
    ceph.ceph(&["osd", "set", "noout"]);
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([step("required", "health", with(&ceph, json!({})))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("required");
    assert!(
        failed[0].1
            && failed[0].2.contains("OSDMAP_FLAGS")
            && failed[0].2.contains("ignore_checks"),
        "{failed:?}"
    );
}

#[test]
fn safe_to_destroy_refuses_an_osd_that_holds_data() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([
            step(
                "report",
                "safe-to-destroy",
                with(&ceph, json!({"osds": [0], "require_safe": false}))
            ),
            step(
                "require",
                "safe-to-destroy",
                with(&ceph, json!({"osds": [0]}))
            ),
        ]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let report = &view.step("report").output;
    assert_eq!(report["safe"], false, "{report}");
    assert_eq!(report["active"], json!([0]), "{report}");
    // Ceph's own answer agrees: not safe.
    let cli = std::process::Command::new("timeout")
        .args(["30", "ceph", "-c"])
        .arg(&ceph.conf)
        .args(["osd", "safe-to-destroy", "0"])
        .output()
        .unwrap();
    assert!(!cli.status.success(), "ceph osd safe-to-destroy 0 said yes");
    let failed = view.failures("require");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].1 && failed[0].2.contains("not safe to destroy") && failed[0].2.contains("[0]"),
        "{failed:?}"
    );
}

#[test]
fn bad_input_fails_the_step_with_a_clear_error() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);

    // A flag that does not exist, given as a run param: the step fails naming it and
    // listing the valid ones, and the cluster's flags are untouched.
    let plan = repo_root().join("plans/ceph/osd-maintenance.yaml");
    let before = ceph.flags();
    let out = medic.run_with_timeout(
        [
            "run".to_string(),
            plan.display().to_string(),
            "-p".into(),
            format!("api={}", ceph.api),
            "-p".into(),
            "osd=0".into(),
            "-p".into(),
            "flags=[\"noout\",\"nosuchflag\"]".into(),
        ],
        Duration::from_secs(120),
    );
    let view = medic.show(&run_id(&out));
    out.expect_code(exit::ROLLED_BACK, || view.pretty());
    let failed = view.failures("set-flags");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (_, retryable, error) = &failed[0];
    assert!(!retryable, "{error}");
    for expected in [
        "nosuchflag",
        "noout",
        "norebalance",
        "nodeep-scrub",
        "flags[1]",
    ] {
        assert!(error.contains(expected), "`{expected}` in: {error}");
    }
    assert_eq!(ceph.flags(), before);

    // Written in the plan, the same flag is refused before anything runs.
    let plan = json!({
        "apiVersion": "medic/v1", "kind": "RecoveryPlan", "metadata": {"name": "bad-flag"},
        "plugins": {"ceph": {"use": "ceph@0.1", "grants": {"http": [ceph.api], "secrets": [SECRET]}}},
        "steps": [step("set", "set-flags", with(&ceph, json!({"flags": ["nosuchflag"]})))],
    });
    let path = medic.write("bad-flag.json", &plan.to_string());
    let out = medic.run(["validate".as_ref(), path.as_os_str()]);
    out.expect_code(exit::INVALID, String::new);
    assert!(
        out.stderr.contains("steps[0].with.flags[0]") && out.stderr.contains("noout"),
        "{out}"
    );

    // An OSD id the cluster does not have: refused before anything is marked.
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([step("out", "osd-out", with(&ceph, json!({"osd": 7})))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("out");
    assert!(
        !failed[0].1
            && failed[0].2.contains("osd.7 does not exist")
            && failed[0].2.contains("its OSDs: 0"),
        "{failed:?}"
    );
    assert_eq!(ceph.osd(0), (true, true));

    // A wrong password in the secret.
    std::fs::write(
        medic.data_dir().join("secrets").join(SECRET),
        "wrong-password",
    )
    .unwrap();
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([step("status", "status", with(&ceph, json!({})))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("status");
    let (_, retryable, error) = &failed[0];
    assert!(!retryable, "{error}");
    assert!(
        error.contains("refused the login of user `medic`")
            && error.contains("secret `ceph-dashboard`")
            && !error.contains("wrong-password"),
        "{error}"
    );

    // No credentials at all: the API's 401 with what to configure.
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([step("status", "status", json!({"api": ceph.api}))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("status");
    assert!(
        failed[0].2.contains("HTTP 401")
            && failed[0].2.contains("password_secret")
            && failed[0].2.contains("[[http.credentials]]"),
        "{failed:?}"
    );
}

#[test]
fn a_token_the_operator_configures_is_attached_by_the_host() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);
    let token = ceph.login_token();
    std::fs::write(
        medic.data_dir().join("secrets/ceph-bearer"),
        format!("Bearer {token}"),
    )
    .unwrap();
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        format!(
            "secrets_dir = \"secrets\"\n\n[[http.credentials]]\norigin = \"{}\"\nheader = \"Authorization\"\nsecret = \"ceph-bearer\"\n",
            ceph.api
        ),
    )
    .unwrap();
    let (out, view) = run_steps(
        &medic,
        &ceph,
        json!([
            step(
                "set",
                "set-flags",
                json!({"api": ceph.api, "flags": ["noscrub"]})
            ),
            step(
                "unset",
                "unset-flags",
                json!({"api": ceph.api, "flags": ["noscrub"]})
            ),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert_eq!(view.step("set").output["added"], json!(["noscrub"]));
    assert!(!has(&ceph.flags(), "noscrub"));
    assert!(!view.json.to_string().contains(&token));
}

#[test]
fn a_stopped_mgr_is_a_retryable_error_naming_the_api() {
    let ceph = Ceph::lease();
    let medic = medic_for(&ceph);
    ceph.stop_mgr();
    let mut health = step("health", "health", with(&ceph, json!({})));
    health["retry"] = json!({"attempts": 2, "backoff": "fixed", "initial": "100ms", "max": "100ms", "jitter": false});
    let (out, view) = run_steps(&medic, &ceph, json!([health]));
    ceph.start();
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("health");
    assert_eq!(failed.len(), 2, "both attempts were made: {failed:?}");
    for (_, retryable, error) in &failed {
        assert!(retryable, "{error}");
        assert!(
            error.contains(&ceph.api) && error.contains("is the mgr running"),
            "{error}"
        );
    }
}
