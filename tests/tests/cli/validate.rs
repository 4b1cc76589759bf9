//! `medic validate`: exit 0 for a valid plan, 2 with one `file:line:col: path:
//! message` line per problem for an invalid one. The classes of problems are unit
//! tested in `plan`; here the command's contract is.

use medic_tests::{Medic, plan};

use crate::exit;

#[test]
fn valid_plans_exit_zero() {
    let medic = Medic::new();
    for name in ["counters.yaml", "rollback.yaml", "approval.yaml"] {
        let path = plan(name);
        let out = medic.run([
            "validate".as_ref(),
            path.as_os_str(),
            "--param".as_ref(),
            "target=127.0.0.1:9".as_ref(),
        ]);
        out.expect_code(0, || format!("{name} should be valid"));
    }
    let example = medic_tests::repo_root().join("plans/examples/parallel-counters.yaml");
    medic
        .run([
            "validate".as_ref(),
            example.as_os_str(),
            "--param".as_ref(),
            "server=127.0.0.1:9".as_ref(),
        ])
        .expect_code(0, || "the shipped example plan should be valid".into());
}

#[test]
fn invalid_plan_exits_two_with_every_diagnostic() {
    let medic = Medic::new();
    medic.write(
        "bad.yaml",
        "apiVersion: medic/v1\n\
         kind: RecoveryPlan\n\
         metadata: { name: t }\n\
         plugins: { probe: { use: probe@0.1 } }\n\
         steps:\n\
         \x20 - id: backup\n\
         \x20   uses: probe/noop\n\
         \x20 - id: pause-writes\n\
         \x20   uses: probe/noop\n\
         \x20 - id: verify\n\
         \x20   needs: [bakup, pause-writes]\n\
         \x20   uses: probe/noop\n\
         \x20 - id: backup\n\
         \x20   uses: probe/noop\n",
    );
    // Relative to the scratch dir (the command's working directory), so the
    // diagnostics name the file as the operator typed it.
    let out = medic.run(["validate", "bad.yaml"]);
    out.expect_code(exit::INVALID, String::new);
    let diagnostics: Vec<&str> = out
        .stderr
        .lines()
        // `file:line:col: ...` lines; a closing summary line may follow them.
        .filter(|l| {
            l.strip_prefix("bad.yaml:")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    assert_eq!(
        diagnostics,
        [
            "bad.yaml:11:13: steps[2].needs[0]: unknown step `bakup`; expected one of: backup, pause-writes, verify",
            "bad.yaml:13:9: steps[3].id: duplicate step id `backup`: steps[0] (at bad.yaml:6:9) has it too; rename one of them",
        ],
        "diagnostics on stderr\n{out}"
    );
    assert!(out.stdout.trim().is_empty(), "nothing on stdout\n{out}");
}

/// The data and plugin dirs can come from the environment instead of flags.
#[test]
fn settings_come_from_the_environment_too() {
    let medic = Medic::new();
    let path = plan("counters.yaml");
    let out = medic
        .spawn_command({
            let mut cmd = medic.bare_command();
            cmd.env("MEDIC_DATA_DIR", medic.data_dir())
                .env("MEDIC_PLUGIN_DIR", medic.plugin_dir())
                .arg("validate")
                .arg(&path)
                .args(["--param", "target=127.0.0.1:9"]);
            cmd
        })
        .wait(std::time::Duration::from_secs(60));
    out.expect_code(0, String::new);
    // With the plugin known, a param that breaks the action's schema is caught.
    medic.write(
        "wrong-param.yaml",
        "apiVersion: medic/v1\n\
         kind: RecoveryPlan\n\
         metadata: { name: t }\n\
         plugins: { probe: { use: probe@0.1 } }\n\
         steps:\n\
         \x20 - id: nap\n\
         \x20   uses: probe/sleep\n\
         \x20   with: { ms: -1 }\n",
    );
    let out = medic
        .spawn_command({
            let mut cmd = medic.bare_command();
            cmd.env("MEDIC_DATA_DIR", medic.data_dir())
                .env("MEDIC_PLUGIN_DIR", medic.plugin_dir())
                .args(["validate", "wrong-param.yaml"]);
            cmd
        })
        .wait(std::time::Duration::from_secs(60));
    out.expect_code(exit::INVALID, || {
        "`ms: -1` breaks probe/sleep's params schema (minimum 0); the plugin dir from \
         MEDIC_PLUGIN_DIR must have been used"
            .into()
    });
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("wrong-param.yaml:8:") && l.contains("steps[0].with.ms")),
        "a diagnostic pointing at `ms`\n{out}"
    );
}
