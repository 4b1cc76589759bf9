//! Tests of the whole `plan` pipeline: valid plans map onto the model, and each
//! class of invalid plan gets exactly the diagnostics a user should see.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::*;

/// The probe plugin's actions, as the plugin registry would describe them.
struct Probe;

impl Catalog for Probe {
    fn action(&self, plugin: &PluginUse, action: &str) -> Result<Option<ActionSpec>, String> {
        if plugin.name != "probe" {
            return Err(format!(
                "not installed; install it with `medic plugin add {}`",
                plugin.name
            ));
        }
        let counter = json!({
            "type": "object",
            "required": ["address", "counter", "amount"],
            "properties": {
                "address": {"type": "string"},
                "counter": {"type": "string"},
                "amount": {"type": "integer", "minimum": 1}
            },
            "additionalProperties": false
        });
        let params_schema = match action {
            "noop" => json!({"type": "object", "additionalProperties": false}),
            "sleep" => json!({
                "type": "object", "required": ["ms"],
                "properties": {"ms": {"type": "integer", "minimum": 0}}, "additionalProperties": false
            }),
            "tcp-check" => json!({
                "type": "object", "required": ["address"],
                "properties": {"address": {"type": "string"}}, "additionalProperties": false
            }),
            "counter-add" | "counter-sub" => counter,
            _ => return Ok(None),
        };
        Ok(Some(ActionSpec {
            params_schema,
            effect: EffectClass::Mutating,
            inverse: None,
        }))
    }
}

const EXAMPLE: &str = include_str!("../../../plans/examples/parallel-counters.yaml");

fn errors(text: &str) -> String {
    parse("plans/x.yaml", text, Format::Yaml, None)
        .unwrap_err()
        .to_string()
}

fn errors_with_catalog(text: &str) -> String {
    parse("plans/x.yaml", text, Format::Yaml, Some(&Probe))
        .unwrap_err()
        .to_string()
}

#[test]
fn example_plan_is_valid_with_and_without_the_catalog() {
    let plan = parse("parallel-counters.yaml", EXAMPLE, Format::Yaml, None).unwrap();
    assert_eq!(
        plan,
        parse(
            "parallel-counters.yaml",
            EXAMPLE,
            Format::Yaml,
            Some(&Probe)
        )
        .unwrap()
    );
    assert_eq!(plan.name, "parallel-counters");
    assert_eq!(plan.kind, PlanKind::Maintenance);
    assert_eq!(plan.steps.len(), 8);
    assert_eq!(plan.concurrency, 4);
    assert_eq!(plan.on_failure, FailurePolicy::Rollback);
    let approve = &plan.steps[plan.step_index("approve").unwrap()];
    let needs: Vec<&str> = approve
        .needs
        .iter()
        .map(|&i| plan.steps[i].id.as_str())
        .collect();
    assert_eq!(needs, ["bump-reads", "bump-writes", "bump-extra", "settle"]);
    assert_eq!(
        approve.kind,
        StepKind::Approval(Approval {
            prompt: "Counters on ${{ params.server }} bumped by ${{ params.amount }} (reads check: ${{ steps['reachable'].status }}). Keep them?".into(),
            timeout: Some(Duration::from_secs(1800)),
            on_timeout: ApprovalTimeout::Reject,
            allow_self_approval: false,
        })
    );
}

#[test]
fn fields_map_onto_the_model_with_defaults() {
    let text = r#"
apiVersion: medic/v1
kind: RecoveryPlan
metadata: { name: mysql-replica-resync, description: Resync a replica }
params:
  primary: { type: string, description: "host:port" }
  lag_limit: { type: integer, default: 10 }
plugins:
  probe: { use: probe@0.1, grants: { connect: ["${{ params.primary }}"], secrets: [root] } }
steps:
  - id: pause-writes
    uses: probe/counter-add
    with: { address: "${{ params.primary }}", counter: writes, amount: 1 }
    undo: { uses: probe/counter-sub, with: { address: "${{ params.primary }}", counter: writes, amount: 1 } }
    retry: { attempts: 3, backoff: fixed, initial: 2s, max: 1m, jitter: false }
    timeout: 10m
    on_failure: continue
    when: "${{ params.lag_limit > 5 }}"
  - id: approve
    needs: [pause-writes, pause-writes]
    approval: { prompt: "Go?", on_timeout: approve, allow_self_approval: true }
"#;
    let plan = parse("x.yaml", text, Format::Yaml, Some(&Probe)).unwrap();
    assert_eq!(plan.description.as_deref(), Some("Resync a replica"));
    assert_eq!(plan.concurrency, 8);
    assert_eq!(plan.on_failure, FailurePolicy::Abort);
    assert_eq!(
        plan.params,
        vec![
            Param {
                name: "primary".into(),
                schema: json!({"type": "string", "description": "host:port"}),
                default: None
            },
            Param {
                name: "lag_limit".into(),
                schema: json!({"type": "integer"}),
                default: Some(json!(10))
            },
        ]
    );
    assert_eq!(
        plan.params_schema,
        json!({
            "type": "object",
            "properties": {
                "primary": {"type": "string", "description": "host:port"},
                "lag_limit": {"type": "integer", "default": 10}
            },
            "required": ["primary"],
            "additionalProperties": false
        })
    );
    assert_eq!(
        plan.plugins["probe"],
        PluginUse {
            alias: "probe".into(),
            name: "probe".into(),
            version: "0.1".into(),
            grants: Grants {
                connect: vec!["${{ params.primary }}".into()],
                secrets: vec!["root".into()],
                ..Default::default()
            },
        }
    );
    let pause = &plan.steps[0];
    assert_eq!(pause.when.as_deref(), Some("params.lag_limit > 5"));
    assert_eq!(pause.timeout, Some(Duration::from_secs(600)));
    assert_eq!(pause.on_failure, Some(FailurePolicy::Continue));
    assert_eq!(
        pause.retry,
        Retry {
            attempts: 3,
            backoff: Backoff::Fixed,
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            jitter: false
        }
    );
    let StepKind::Action { call, undo } = &pause.kind else {
        panic!("an action step")
    };
    assert_eq!(call.plugin, "probe");
    assert_eq!(call.action, "counter-add");
    assert_eq!(
        call.with,
        json!({"address": "${{ params.primary }}", "counter": "writes", "amount": 1})
    );
    assert_eq!(undo.as_ref().unwrap().action, "counter-sub");
    let approve = &plan.steps[1];
    assert_eq!(approve.needs, vec![0]);
    assert_eq!(approve.retry, Retry::default());
    assert_eq!(
        approve.kind,
        StepKind::Approval(Approval {
            prompt: "Go?".into(),
            timeout: None,
            on_timeout: ApprovalTimeout::Approve,
            allow_self_approval: true,
        })
    );
}

#[test]
fn canonical_json_parses_back_to_the_same_plan() {
    let plan = parse("a.yaml", EXAMPLE, Format::Yaml, None).unwrap();
    let again = parse("a.json", &plan.canonical, Format::Json, None).unwrap();
    assert_eq!(plan, again);
    assert_eq!(plan.hash.len(), 64);
    assert!(plan.canonical.starts_with(r#"{"apiVersion":"medic/v1","kind":"MaintenancePlan","metadata":{"name":"parallel-counters""#));
    // Any change to the document changes the identity.
    let other = parse(
        "a.yaml",
        &EXAMPLE.replace("concurrency: 4", "concurrency: 5"),
        Format::Yaml,
        None,
    )
    .unwrap();
    assert_ne!(plan.hash, other.hash);
}

#[test]
fn syntax_errors_have_positions() {
    insta::assert_snapshot!(
        "syntax_yaml",
        errors("apiVersion: medic/v1\nsteps:\n  - id: a\n    needs: [b\n")
    );
    insta::assert_snapshot!(
        "syntax_json",
        parse(
            "plans/x.json",
            "{\n  \"apiVersion\": \"medic/v1\",\n  \"kind\" \"RecoveryPlan\"\n}",
            Format::Json,
            None
        )
        .unwrap_err()
        .to_string()
    );
    insta::assert_snapshot!(
        "duplicate_keys",
        errors("apiVersion: medic/v1\nkind: RecoveryPlan\nkind: MaintenancePlan\n")
    );
}

#[test]
fn schema_errors_say_what_was_expected() {
    let text = r#"apiVersion: medic/v2
kind: RecoveryPlan
metadata: { name: Bad_Name }
params:
  my-param: { type: string }
  count: 3
plugins:
  probe: { use: probe@0.1, grant: {} }
concurrency: 0
on_failure: rollbak
steps:
  - id: a
    uses: probe/noop
    retry: { attempts: "3" }
    timeout: 10
  - id: B
    usess: probe/noop
  - id: c
    uses: probe/noop
    approval: { prompt: both }
  - id: d
    approval: { prompt: "ok?" }
    with: { x: 1 }
    needs: b
"#;
    insta::assert_snapshot!("schema_errors", errors(text));
    insta::assert_snapshot!(
        "schema_errors_top",
        errors("kind: Plan\nsteps: []\nextra: 1\n")
    );
    insta::assert_snapshot!("not_an_object", errors("- a\n- b\n"));
}

const HEAD: &str = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: t }\nplugins: { probe: { use: probe@0.1 } }\n";

#[test]
fn allow_self_approval_must_be_a_boolean() {
    let text = format!(
        "{HEAD}steps:\n  - id: ok\n    approval: {{ prompt: go, allow_self_approval: \"yes\" }}\n"
    );
    let errors = errors(&text);
    assert!(
        errors.contains("steps[0].approval.allow_self_approval") && errors.contains("boolean"),
        "{errors}"
    );
}

#[test]
fn unknown_needs_and_duplicate_ids_are_named() {
    let text = format!(
        "{HEAD}steps:\n  - id: backup\n    uses: probe/noop\n  - id: pause-writes\n    uses: probe/noop\n  - id: verify\n    needs: [bakup, pause-writes]\n    uses: probe/noop\n  - id: backup\n    uses: probe/noop\n"
    );
    insta::assert_snapshot!("needs_and_duplicates", errors(&text));
}

#[test]
fn cycles_are_named_in_order() {
    let text = format!(
        "{HEAD}steps:\n  - id: a\n    needs: [c]\n    uses: probe/noop\n  - id: b\n    needs: [a]\n    uses: probe/noop\n  - id: c\n    needs: [b]\n    uses: probe/noop\n  - id: d\n    needs: [d]\n    uses: probe/noop\n"
    );
    insta::assert_snapshot!("cycles", errors(&text));
}

#[test]
fn template_references_are_checked() {
    let text = format!(
        r#"{HEAD}params:
  primary: {{ type: string }}
steps:
  - id: pause-writes
    uses: probe/counter-add
    with: {{ address: "${{{{ params.primary }}}}", counter: "${{{{ steps['pause-writes'].output.x }}}}", amount: 1 }}
    undo: {{ uses: probe/counter-sub, with: {{ address: "${{{{ steps['pause-writes'].output.address }}}}", counter: w, amount: 1 }} }}
  - id: backup
    uses: probe/noop
    with: {{ a: "${{{{ steps.verify.output.file }}}}", b: "${{{{ params.replica }}}}", c: "${{{{ secrets.root }}}}" }}
  - id: verify
    needs: [backup]
    when: "steps.pause-writes.status == 'succeeded'"
    uses: probe/noop
    with: {{ a: "${{{{ steps.backup.outputs.file }}}}", b: "${{{{ steps.bakup.output }}}}", c: "${{{{ run.id }}}} ${{{{ run.owner }}}}", d: ["${{{{ params.primary + }}}}"] }}
  - id: ask
    needs: [verify]
    approval: {{ prompt: "Resync from ${{{{ steps.backup.output.file }}}} (${{{{ range(3) | list }}}})?" }}
"#
    );
    insta::assert_snapshot!("template_references", errors(&text));
    let grants = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: t }\nplugins: { probe: { use: probe@0.1, grants: { connect: [\"${{ steps.a.output.host }}\", \"${{ run.id }}\"] } } }\nsteps:\n  - id: a\n    uses: probe/noop\n";
    insta::assert_snapshot!("template_in_grants", errors(grants));
}

#[test]
fn plugin_uses_are_checked() {
    let text = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: t }\nplugins:\n  probe: { use: probe }\n  kafka: { use: kafka@x.y }\n  Ceph: { use: ceph@1 }\nsteps:\n  - id: a\n    uses: mysql/backup\n  - id: b\n    uses: probe/noop\n    undo: { uses: consul/put }\n";
    insta::assert_snapshot!("plugin_uses", errors(text));
}

#[test]
fn actions_are_checked_against_the_catalog() {
    let text = r#"apiVersion: medic/v1
kind: RecoveryPlan
metadata: { name: t }
params:
  n: { type: integer }
plugins:
  probe: { use: probe@0.1 }
  mysql: { use: mysql@0.1 }
steps:
  - id: a
    uses: probe/counter-add
    with: { address: 5, counter: "${{ params.n }}", amount: "${{ params.n }}", extra: true }
    undo: { uses: probe/counter-sub, with: { address: x, counter: y, amount: 0 } }
  - id: b
    uses: probe/fly
  - id: c
    uses: probe/fly
  - id: d
    uses: mysql/backup
  - id: e
    uses: mysql/restore
  - id: f
    uses: probe/sleep
"#;
    insta::assert_snapshot!("catalog", errors_with_catalog(text));
    // Without a catalog the same plan is fine.
    assert!(parse("x.yaml", text, Format::Yaml, None).is_ok());
}

#[test]
fn other_semantic_errors() {
    let text = format!(
        "{HEAD}params:\n  n: {{ type: integer, default: many }}\n  m: {{ type: strin }}\nsteps:\n  - id: a\n    uses: probe/noop\n    timeout: 10 mins please\n    retry: {{ initial: 2m, max: 1m }}\n    when: 'params.n >'\n  - id: b\n    approval: {{ prompt: 'ok ${{{{ params.n }}', timeout: forever }}\n"
    );
    insta::assert_snapshot!("other_semantic", errors(&text));
}

#[test]
fn objectives_are_checked() {
    let steps = "steps:\n  - { id: a, uses: probe/noop }\n  - { id: b, uses: probe/noop }\n  - { id: c, uses: probe/noop, needs: [a] }\n";
    let ok = format!("{HEAD}objective: {{ within: 15m, from: a, to: c }}\n{steps}");
    let plan = parse("x.yaml", &ok, Format::Yaml, None).unwrap();
    assert_eq!(
        plan.objective,
        Some(Objective {
            within: Duration::from_secs(900),
            from: Some(0),
            to: Some(2)
        })
    );
    for (objective, expected) in [
        (
            "{ within: soon }",
            "objective.within: invalid duration `soon`",
        ),
        ("{ within: 0s }", "objective.within: must be longer than 0s"),
        (
            "{ within: 1m, from: zz }",
            "objective.from: unknown step `zz`; expected one of: a, b, c",
        ),
        (
            "{ within: 1m, from: a, to: b }",
            "objective.to: step `b` does not depend on `from` step `a`",
        ),
        ("{ from: a }", "objective: missing required field `within`"),
    ] {
        let text = format!("{HEAD}objective: {objective}\n{steps}");
        let got = errors(&text);
        assert!(got.contains(expected), "{objective}: {got}");
    }
}

#[test]
fn json_plans_get_positions_too() {
    let text = "{\n  \"apiVersion\": \"medic/v1\",\n  \"kind\": \"RecoveryPlan\",\n  \"metadata\": {\"name\": \"t\"},\n  \"steps\": [\n    {\"id\": \"a\", \"needs\": [\"zzz\"], \"approval\": {\"prompt\": \"?\"}}\n  ]\n}\n";
    assert_eq!(
        parse("p.json", text, Format::Json, None)
            .unwrap_err()
            .to_string(),
        "p.json:6:27: steps[0].needs[0]: unknown step `zzz`; expected one of: a"
    );
}

fn given(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn bind_params_coerces_fills_defaults_and_checks() {
    let text = format!(
        "{HEAD}params:\n  host: {{ type: string }}\n  n: {{ type: integer, default: 3 }}\n  ratio: {{ type: number }}\n  on: {{ type: boolean, default: false }}\n  tags: {{ type: array, items: {{ type: string }}, default: [] }}\n  opts: {{ type: object }}\nsteps:\n  - id: a\n    uses: probe/noop\n"
    );
    let plan = parse("x.yaml", &text, Format::Yaml, None).unwrap();
    let bound = bind_params(
        &plan,
        &given(&[
            ("host", json!("10")),
            ("ratio", json!("0.5")),
            ("on", json!("true")),
            ("tags", json!("[\"a\"]")),
            ("opts", json!({"k": 1})),
        ]),
    )
    .unwrap();
    assert_eq!(
        bound,
        json!({"host": "10", "n": 3, "ratio": 0.5, "on": true, "tags": ["a"], "opts": {"k": 1}})
    );
    assert_eq!(
        serde_json::to_string(&bound).unwrap(),
        r#"{"host":"10","n":3,"ratio":0.5,"on":true,"tags":["a"],"opts":{"k":1}}"#
    );
    let err = bind_params(
        &plan,
        &given(&[
            ("n", json!("three")),
            ("tags", json!("[1]")),
            ("replicas", json!("2")),
            ("opts", json!("{}")),
        ]),
    )
    .unwrap_err();
    insta::assert_snapshot!("bind_params", err.to_string());
}

#[test]
fn ten_thousand_steps_validate() {
    use std::fmt::Write;
    let mut text = format!("{HEAD}params: {{ p: {{ type: string }} }}\nsteps:\n");
    for i in 0..10_000 {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("[s{}, s{}]", i - 1, i / 2)
        };
        let needs = if needs.is_empty() {
            "[]".to_string()
        } else {
            needs
        };
        let with = if i == 0 {
            "{}".to_string()
        } else {
            format!(
                "{{ a: \"${{{{ steps.s{}.output.x }}}} ${{{{ params.p }}}}\" }}",
                i / 3
            )
        };
        write!(
            text,
            "  - id: s{i}\n    needs: {needs}\n    uses: probe/noop\n    with: {with}\n"
        )
        .unwrap();
    }
    let started = std::time::Instant::now();
    let plan = parse("big.yaml", &text, Format::Yaml, None).unwrap();
    assert_eq!(plan.steps.len(), 10_000);
    let again = parse("big.json", &plan.canonical, Format::Json, None).unwrap();
    assert_eq!(plan, again);
    // Generous: it takes well under a second in release builds.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn no_input_makes_it_panic() {
    // Every prefix of a real plan, in both formats, and some odd documents.
    let plan = parse("a.yaml", EXAMPLE, Format::Yaml, None).unwrap();
    for text in [EXAMPLE, plan.canonical.as_str()] {
        for (end, _) in text.char_indices().step_by(7) {
            let _ = parse("p", &text[..end], Format::Yaml, Some(&Probe));
            let _ = parse("p", &text[..end], Format::Json, Some(&Probe));
        }
    }
    for odd in [
        "",
        "~",
        "[]",
        "{}",
        "?",
        "- - -",
        "a: !!binary aGk=",
        "a: !custom 1",
        "{a: 1}: 2",
        "[a, b]: 1",
        "steps: [{id: a, needs: [a, 5, {x: 1}]}]",
        "\u{feff}apiVersion: medic/v1",
        "\t- x",
        "a: 1e999999",
        "steps:\n - id: a\n   with: \"${{ \"\n",
        "steps: [{id: a, when: '${{ }}'}]",
    ] {
        let _ = parse("p", odd, Format::Yaml, Some(&Probe));
        let _ = parse("p", odd, Format::Json, Some(&Probe));
    }
}

#[test]
fn schema_constant_is_the_published_file() {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    // Every property documents itself.
    fn check(v: &Value, at: &str) {
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                assert!(
                    p.get("description").is_some(),
                    "{at}/{k} has no description"
                );
                check(p, &format!("{at}/{k}"));
            }
        }
        if let Some(defs) = v.get("$defs").and_then(Value::as_object) {
            for (k, d) in defs {
                check(d, &format!("{at}/$defs/{k}"));
            }
        }
    }
    check(&schema, "");
}

#[test]
fn http_grants_are_origins() {
    let ok = crate::plan::origin("http://127.0.0.1:2379").unwrap();
    assert_eq!(ok.authority(), "127.0.0.1:2379");
    assert_eq!(
        crate::plan::origin("https://Ceph-Mgr/")
            .unwrap()
            .to_string(),
        "https://ceph-mgr:443"
    );
    assert_eq!(
        crate::plan::origin("http://[::1]:80").unwrap().authority(),
        "[::1]:80"
    );
    for bad in [
        "127.0.0.1:2379",
        "ftp://x",
        "http://x/v3/kv",
        "http://u@x",
        "http://x:0",
        "http://:80",
        "http://x:99999",
    ] {
        assert!(crate::plan::origin(bad).is_err(), "{bad} should be refused");
    }
    let plan = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: t }\nplugins: { probe: { use: probe@0.1, grants: { http: [\"http://127.0.0.1:2379/v3\"] } } }\nsteps:\n  - id: a\n    uses: probe/noop\n";
    let e = errors(plan);
    assert!(
        e.contains("plugins.probe.grants.http[0]") && e.contains("not just an origin"),
        "{e}"
    );
}

#[test]
fn schedules_declared_in_metadata_are_checked_like_api_schedules() {
    let plan = |schedules: &str| {
        format!(
            "apiVersion: medic/v1\nkind: MaintenancePlan\nmetadata:\n  name: sweep\n  schedules:\n{schedules}\nparams:\n  target: {{ type: string }}\nplugins: {{ probe: {{ use: probe@0.1 }} }}\nsteps:\n  - id: a\n    uses: probe/noop\n"
        )
    };
    let ok = parse(
        "x.yaml",
        &plan("    - { name: nightly, cron: \"0 3 * * *\", timezone: Europe/Berlin, params: { target: db1 }, missed: run-once }"),
        Format::Yaml,
        None,
    )
    .unwrap();
    assert_eq!(ok.schedules.len(), 1);
    assert_eq!(ok.schedules[0].plan, "sweep");
    assert_eq!(ok.schedules[0].missed, crate::schedule::Missed::RunOnce);

    let e = errors(&plan(
        "    - { name: nightly, cron: \"0 3 * * 1\", params: { target: db1 } }",
    ));
    assert!(
        e.contains("x.yaml:6:")
            && e.contains("metadata.schedules[0].cron")
            && e.contains("day-of-week as names"),
        "{e}"
    );
    let e = errors(&plan(
        "    - { name: nightly, cron: \"0 3 * * *\", timezone: Mars/Olympus, params: { target: db1 } }",
    ));
    assert!(
        e.contains("metadata.schedules[0].timezone") && e.contains("IANA"),
        "{e}"
    );
    let e = errors(&plan(
        "    - { name: n, cron: \"0 3 * * *\", params: { target: db1 } }\n    - { name: n, cron: \"0 4 * * *\", params: { target: db1 } }",
    ));
    assert!(
        e.contains("metadata.schedules[1].name") && e.contains("declared twice"),
        "{e}"
    );
    let e = errors(&plan("    - { name: n, cron: \"0 3 * * *\" }"));
    assert!(
        e.contains("metadata.schedules[0].params") && e.contains("target"),
        "{e}"
    );
    let e = errors(&plan(
        "    - { name: n, cron: \"0 3 * * *\", params: { target: db1 }, plan: other }",
    ));
    assert!(
        e.contains("metadata.schedules[0]") && e.contains("plan"),
        "{e}"
    );
}
