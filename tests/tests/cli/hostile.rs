//! A hostile plugin against the real `medic serve`: `plugins/hostile` (and
//! `plugins/hostile-http`) try to read host files, reach ungranted ports and
//! origins, spin forever, allocate past the memory cap, return a huge output, panic
//! and read an ungranted secret. Each attempt must end as its step's clear error,
//! reach nothing outside, and leave the server serving: after each, `/healthz` is ok
//! and another run succeeds. `make plugins` puts the fixtures in `plugins/dist/fixtures`,
//! apart from the plugins a plain `--plugin-dir plugins/dist` finds.

use std::io::ErrorKind;
use std::net::TcpListener;

use medic_tests::{Medic, Server};

/// `medic serve` (admin token) with the built plugins and the hostile fixtures.
fn serve_with_fixtures(medic: &Medic) -> Server {
    let dist = medic.plugin_dir().to_path_buf();
    let fixtures = dist.join("fixtures");
    assert!(
        fixtures.join("hostile.wasm").is_file() && fixtures.join("hostile_http.wasm").is_file(),
        "{} lacks hostile.wasm or hostile_http.wasm: run `make plugins` first",
        fixtures.display()
    );
    Server::admin_with_plugin_dirs(medic, &[&dist, &fixtures])
}
use serde_json::{Value, json};

/// A one-step plan calling `plugin`'s `action` with `with`, granted `grants`; no
/// retries, so each attack is tried once.
fn attack_plan(plugin: &str, action: &str, with: &Value, grants: &Value) -> String {
    format!(
        "apiVersion: medic/v1
kind: RecoveryPlan
metadata: {{ name: hostile-{action} }}
plugins:
  h: {{ use: {plugin}@0.1, grants: {grants} }}
steps:
  - id: attack
    uses: h/{action}
    with: {with}
    timeout: 3s
"
    )
}

const PROBE_PLAN: &str = "apiVersion: medic/v1
kind: RecoveryPlan
metadata: { name: still-works }
plugins:
  probe: { use: probe@0.1 }
steps:
  - id: noop
    uses: probe/noop
    with: { echo: fine }
";

/// A TCP listener no plan grants: the test checks afterwards that nobody reached it.
struct Bystander(TcpListener);

impl Bystander {
    fn start() -> Bystander {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the bystander");
        listener.set_nonblocking(true).unwrap();
        Bystander(listener)
    }

    fn address(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    fn assert_untouched(&self, what: &str) {
        match self.0.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("{what}: {peer} reached the ungranted {}", self.address()),
            Err(e) => panic!("{what}: accept on the bystander: {e}"),
        }
    }
}

/// Submits `plan` and waits for the run to end; returns the run's id and view.
fn submit_and_finish(server: &Server, plan: &str) -> (String, Value) {
    let (status, _, created) = server.post("/v1/runs", &[], &json!({ "plan": plan }));
    assert_eq!(status, 201, "submitting\n{plan}\n{created}");
    let run = created["id"].as_str().expect("run id").to_string();
    let view = server.wait_run(&run, "the run to end", |v| {
        let s = v["run"]["status"].as_str()?;
        matches!(s, "succeeded" | "failed").then(|| v.clone())
    });
    (run, view)
}

/// The server still answers and still runs plans.
fn assert_still_serving(server: &Server, after: &str) {
    let (status, _, body) = server.get("/healthz");
    assert_eq!(status, 200, "/healthz after {after}: {body}");
    let (run, view) = submit_and_finish(server, PROBE_PLAN);
    assert_eq!(
        view["run"]["status"],
        "succeeded",
        "a run after {after} should succeed\n{}",
        server.describe(&run)
    );
}

#[test]
fn each_hostile_action_is_contained_as_a_step_error_and_medic_keeps_serving() {
    let medic = Medic::new();
    let server = serve_with_fixtures(&medic);
    let bystander = Bystander::start();
    let granted = Bystander::start();
    let grants = json!({ "connect": [granted.address()], "secrets": ["granted-one"] });

    // (action, params, what the step's error must say)
    let attacks: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "read-file",
            json!({ "path": "/etc/passwd" }),
            // The guest has no preopened directory: the host's files do not exist.
            vec!["reading /etc/passwd: No such file or directory".into()],
        ),
        (
            "connect",
            json!({ "address": bystander.address() }),
            vec![format!(
                "connecting to {}: Permission denied",
                bystander.address()
            )],
        ),
        ("spin", json!({}), vec!["timed out after 3s".into()]),
        (
            "alloc",
            json!({ "mib": 1024 }),
            vec![
                "plugin broke its memory limit".into(),
                "the limit is 64 MiB".into(),
            ],
        ),
        (
            // 100 MB never fits in 64 MiB of memory: it breaks that limit first.
            "big-output",
            json!({ "mib": 100 }),
            vec!["plugin broke its memory limit".into()],
        ),
        (
            "big-output",
            json!({ "mib": 2 }),
            vec![
                "plugin broke its output size limit".into(),
                "the limit is 1048576".into(),
            ],
        ),
        (
            "panic",
            json!({}),
            vec![
                "plugin trapped".into(),
                "hostile plugin panics on purpose".into(),
            ],
        ),
        (
            "secret",
            json!({ "name": "db-password" }),
            vec!["secret `db-password` is not granted to plugin `hostile`".into()],
        ),
    ];

    for (action, with, expected) in attacks {
        let what = format!("hostile/{action} {with}");
        let (run, view) =
            submit_and_finish(&server, &attack_plan("hostile", action, &with, &grants));
        let step = &view["steps"][0];
        assert_eq!(
            (view["run"]["status"].as_str(), step["status"].as_str()),
            (Some("failed"), Some("failed")),
            "{what} should fail its step\n{}",
            server.describe(&run)
        );
        let error = step["error"].as_str().unwrap_or_default();
        for part in &expected {
            assert!(
                error.contains(part.as_str()),
                "{what}: the step error should say `{part}`, it says: {error}\n{}",
                server.describe(&run)
            );
        }
        assert!(
            step["output"].is_null(),
            "{what} produced an output: {}",
            step["output"]
        );
        bystander.assert_untouched(&what);
        assert_still_serving(&server, &what);
    }
}

/// HTTP through `wasi:http` to an origin the plan does not grant. Until medic's host
/// offers `wasi:http` (being built concurrently), the component does not link and the
/// plan is refused at submission; once it does, the request must be refused at the
/// step. Either way nothing reaches the origin and the server keeps serving.
#[test]
fn http_to_an_ungranted_origin_never_leaves_the_sandbox() {
    let medic = Medic::new();
    let server = serve_with_fixtures(&medic);
    let origin = Bystander::start();
    let granted = Bystander::start();
    let plan = attack_plan(
        "hostile_http",
        "get",
        &json!({ "authority": origin.address() }),
        &json!({ "http": [format!("http://{}", granted.address())] }),
    );
    let (status, _, created) = server.post("/v1/runs", &[], &json!({ "plan": plan }));
    // The host links wasi:http: the plan is accepted, and the request is refused at send.
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().expect("run id").to_string();
    let view = server.wait_run(&run, "the run to end", |v| {
        let s = v["run"]["status"].as_str()?;
        matches!(s, "succeeded" | "failed").then(|| v.clone())
    });
    let step = &view["steps"][0];
    assert_eq!(
        step["status"],
        "failed",
        "HTTP to an ungranted origin must fail\n{}",
        server.describe(&run)
    );
    let error = step["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&origin.address())
            || error.contains("not granted")
            || error.contains("Denied")
            || error.contains("denied"),
        "the step error should say the origin was refused: {error}"
    );
    origin.assert_untouched("hostile_http/get");
    assert_still_serving(&server, "hostile_http/get");
}
