//! The plan registry over HTTP: numbered versions per plan name, the text kept as
//! written, and runs submitted by name that really execute the version asked for
//! (checked in the counter target, not only in medic's own view).

use medic_tests::{CounterTarget, Medic, Server, plan};
use serde_json::{Value, json};

fn counters_text() -> String {
    std::fs::read_to_string(plan("counters.yaml")).expect("test plan")
}

/// counters.yaml with bump-a (and its undo) moving counter `a` by `amount`.
fn counters_with_amount(amount: i64) -> String {
    let text = counters_text();
    let changed = text.replace(
        "counter: a, amount: 10",
        &format!("counter: a, amount: {amount}"),
    );
    let changed = changed.replace(
        "      counter: a\n      amount: 10\n",
        &format!("      counter: a\n      amount: {amount}\n"),
    );
    assert_eq!(
        changed.matches(&format!("amount: {amount}")).count(),
        2,
        "bump-a and its undo both changed"
    );
    changed
}

fn register(server: &Server, text: &str) -> (u16, Value, Option<String>) {
    server.post_located("/v1/plans", &json!({ "plan": text }))
}

#[test]
fn registering_numbers_versions_per_name_and_keeps_the_text_as_written() {
    let medic = Medic::new();
    let server = Server::admin(&medic);
    let v1_text = counters_text();
    let (status, v1, location) = register(&server, &v1_text);
    assert_eq!(status, 201, "{v1}");
    assert_eq!(
        (&v1["name"], &v1["version"], &v1["created"]),
        (&json!("test-counters"), &json!(1), &json!(true)),
        "{v1}"
    );
    assert_eq!(
        location.as_deref(),
        Some("/v1/plans/test-counters/versions/1")
    );

    let (status, again, _) = register(&server, &v1_text);
    assert_eq!(status, 200, "identical text is not a new version: {again}");
    assert_eq!(
        (&again["version"], &again["created"]),
        (&json!(1), &json!(false))
    );
    assert_eq!(again["hash"], v1["hash"]);

    let v2_text = format!("# v2: bump a by 20\n{}", counters_with_amount(20));
    let (status, v2, _) = register(&server, &v2_text);
    assert_eq!((status, &v2["version"]), (201, &json!(2)), "{v2}");
    assert_ne!(v2["hash"], v1["hash"]);

    // A JSON object is registered too, as pretty JSON under its own name.
    let (status, obj, _) = register(
        &server,
        "{\"apiVersion\": \"medic/v1\", \"kind\": \"RecoveryPlan\", \"metadata\": {\"name\": \"tiny\"}, \
         \"plugins\": {\"probe\": {\"use\": \"probe@0.1\"}}, \"steps\": [{\"id\": \"a\", \"uses\": \"probe/noop\"}]}",
    );
    assert_eq!((status, &obj["version"]), (201, &json!(1)), "{obj}");

    let (_, _, list) = server.get("/v1/plans");
    let names: Vec<(Value, Value, Value)> = list["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| {
            (
                p["name"].clone(),
                p["latest"].clone(),
                p["versions"].clone(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (json!("test-counters"), json!(2), json!(2)),
            (json!("tiny"), json!(1), json!(1))
        ],
        "{list}"
    );

    let (status, _, versions) = server.get("/v1/plans/test-counters");
    assert_eq!(status, 200, "{versions}");
    assert_eq!(
        versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["version"].clone(), v["hash"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!(1), v1["hash"].clone()),
            (json!(2), v2["hash"].clone())
        ]
    );

    let (status, _, one) = server.get("/v1/plans/test-counters/versions/1");
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        one["source"],
        json!(v1_text),
        "the text exactly as registered"
    );
    assert_eq!(one["format"], "yaml");
    let (_, _, latest) = server.get("/v1/plans/test-counters/versions/latest");
    assert_eq!(
        (&latest["version"], &latest["source"]),
        (&json!(2), &json!(v2_text)),
        "comments and all"
    );

    for (path, want) in [
        ("/v1/plans/test-counters/versions/3", 404),
        ("/v1/plans/test-counters/versions/0", 400),
        ("/v1/plans/test-counters/versions/two", 400),
        ("/v1/plans/ghost", 404),
        ("/v1/plans/ghost/versions/latest", 404),
    ] {
        let (status, ctype, body) = server.get(path);
        assert_eq!(
            (status, ctype.as_str()),
            (want, "application/problem+json"),
            "{path}: {body}"
        );
    }
    let (_, _, missing) = server.get("/v1/plans/test-counters/versions/3");
    assert_eq!(
        missing["detail"],
        "plan `test-counters` has no version 3; its versions are 1 to 2"
    );
}

#[test]
fn an_invalid_plan_is_not_registered_and_every_problem_has_its_field_path() {
    let medic = Medic::new();
    let server = Server::admin(&medic);
    let broken = counters_text()
        .replace("uses: probe/noop", "uses: nope/noop")
        .replace(
            "needs: [start]\n    uses: probe/sleep",
            "needs: [strat]\n    uses: probe/sleep",
        );
    let (status, problem, _) = register(&server, &broken);
    assert_eq!(status, 422, "{problem}");
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["steps[0].uses", "steps[1].needs[0]"], "{problem}");
    assert!(
        problem["errors"][0]["line"].is_number(),
        "positions in the text: {problem}"
    );
    let (status, body, _) = register(
        &server,
        &counters_text().replace("name: test-counters", "name: validate"),
    );
    assert_eq!(
        status, 422,
        "`validate` is a route, not a plan name: {body}"
    );
    let (_, _, list) = server.get("/v1/plans");
    assert_eq!(list["plans"], json!([]), "nothing was registered");
}

#[test]
fn a_run_submitted_by_name_executes_the_version_asked_for() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    assert_eq!(register(&server, &counters_text()).0, 201);
    assert_eq!(register(&server, &counters_with_amount(20)).0, 201);
    let params = json!({ "target": target.address() });

    // No version: the latest (2), which adds 20 to counter a.
    let (status, _, latest) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan_name": "test-counters", "params": params }),
    );
    assert_eq!(status, 201, "{latest}");
    let latest = latest["id"].as_str().unwrap().to_owned();
    let view = server.wait_status(&latest, "succeeded");
    assert_eq!(
        (&view["run"]["plan_name"], &view["run"]["plan_version"]),
        (&json!("test-counters"), &json!(2)),
        "{view}"
    );
    assert_eq!(target.value("a"), 20, "version 2 ran");

    let (status, _, first) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan_name": "test-counters", "plan_version": 1, "params": params }),
    );
    assert_eq!(status, 201, "{first}");
    let first = first["id"].as_str().unwrap().to_owned();
    let view = server.wait_status(&first, "succeeded");
    assert_eq!(view["run"]["plan_version"], 1, "{view}");
    assert_eq!(target.value("a"), 30, "version 1 ran: +10");
    target.assert_each_key_applied_once();

    let (_, _, list) = server.get("/v1/runs?plan=test-counters");
    let listed: Vec<(Value, Value)> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].clone(), r["plan_version"].clone()))
        .collect();
    assert_eq!(
        listed,
        [(json!(first), json!(1)), (json!(latest), json!(2))],
        "{list}"
    );

    let inline = std::fs::read_to_string(plan("counters.yaml")).unwrap();
    for (body, want, says) in [
        (
            json!({ "plan_name": "ghost" }),
            404,
            "no plan named `ghost`",
        ),
        (
            json!({ "plan_name": "test-counters", "plan_version": 9, "params": params }),
            404,
            "has no version 9",
        ),
        (
            json!({ "plan_name": "test-counters", "plan": inline, "params": params }),
            400,
            "not both",
        ),
        (json!({ "params": params }), 400, "give `plan`"),
        (
            json!({ "plan": inline, "plan_version": 1, "params": params }),
            400,
            "goes with `plan_name`",
        ),
        (
            json!({ "plan_name": "test-counters", "params": { "target": 5 } }),
            422,
            "params do not fit",
        ),
    ] {
        let (status, ctype, problem) = server.post("/v1/runs", &[], &body);
        assert_eq!(
            (status, ctype.as_str()),
            (want, "application/problem+json"),
            "{body} -> {problem}"
        );
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.contains(says)),
            "{body} -> {problem}"
        );
    }
    let (_, _, problem) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan_name": "test-counters", "params": { "target": 5 } }),
    );
    assert_eq!(problem["errors"][0]["path"], "params.target", "{problem}");
    let (_, _, list) = server.get("/v1/runs");
    assert_eq!(
        list["runs"].as_array().map(Vec::len),
        Some(2),
        "no run for a refused submission: {list}"
    );
}
