//! The OpenAPI document `medic serve` publishes at `/openapi.json`: it covers every
//! route the router has, every documented operation is really routed, and a fuzzer
//! driven by the document (schemathesis, from PyPI) finds no server error.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use medic_tests::{Medic, Server, repo_root};
use regex::Regex;
use serde_json::Value;

/// (METHOD, path template) of every operation in the served document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("`paths` in the document");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item object")
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Every `#[utoipa::path(METHOD, path = "...")]` in the API's source: the handlers.
fn annotated_handlers() -> (BTreeSet<(String, String)>, Vec<String>) {
    let dir = repo_root().join("engine/src/api");
    let path_attr = Regex::new(r#"#\[utoipa::path\(\s*(\w+)\s*,\s*path\s*=\s*"([^"]+)""#).unwrap();
    let plain_route = Regex::new(r"\.(route|route_service|nest|nest_service)\(").unwrap();
    let mut handlers = BTreeSet::new();
    let mut bypasses = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("engine/src/api") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read an api source file");
        for c in path_attr.captures_iter(&text) {
            handlers.insert((c[1].to_uppercase(), c[2].to_owned()));
        }
        for (n, line) in text.lines().enumerate() {
            if plain_route.is_match(line) {
                bypasses.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    (handlers, bypasses)
}

/// A request to `path` with each `{param}` filled in, as `method`.
fn call(http: &ureq::Agent, base: &str, method: &str, path: &str) -> (u16, Value) {
    let filled = Regex::new(r"\{[^}]+\}").unwrap().replace_all(path, "x");
    let url = format!("{base}{filled}");
    let resp = match method {
        "GET" => http.get(&url).call(),
        "POST" => http.post(&url).content_type("application/json").send("{}"),
        "PUT" => http.put(&url).content_type("application/json").send("{}"),
        "PATCH" => http.patch(&url).content_type("application/json").send("{}"),
        "DELETE" => http.delete(&url).call(),
        other => panic!("no request for method {other}"),
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    // Streams (server-sent events) would not end: the status and headers are enough.
    let is_stream = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if is_stream {
        return (status, Value::Null);
    }
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[test]
fn the_openapi_document_covers_every_route_and_every_documented_route_is_served() {
    let medic = Medic::new();
    let server = Server::open(&medic);
    let (status, doc) = server.get_json("/openapi.json");
    assert_eq!(status, 200, "GET /openapi.json: {doc}");
    assert_eq!(doc["openapi"], "3.1.0", "an OpenAPI 3.1 document");
    let documented = operations(&doc);

    // The router is built only from the documented table: no route added beside it.
    let (handlers, bypasses) = annotated_handlers();
    assert!(
        bypasses.is_empty(),
        "routes added with plain axum routing are missing from /openapi.json; register them \
         with utoipa_axum `routes!` and a #[utoipa::path]:\n{}",
        bypasses.join("\n")
    );
    let unregistered: Vec<_> = handlers.difference(&documented).collect();
    assert!(
        unregistered.is_empty(),
        "handlers with #[utoipa::path] that the router does not serve (missing from routes()): {unregistered:?}"
    );
    assert_eq!(
        handlers, documented,
        "the document has operations no handler in engine/src/api declares"
    );

    // The API the CLI and docs/api.md rely on is all there.
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/plans/validate"),
        ("POST", "/v1/runs"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/{id}"),
        ("GET", "/v1/runs/{id}/events"),
        ("POST", "/v1/runs/{id}/cancel"),
        ("POST", "/v1/runs/{id}/steps/{step}/approve"),
        ("POST", "/v1/runs/{id}/steps/{step}/reject"),
        ("POST", "/v1/runs/{id}/steps/{step}/retry"),
        ("POST", "/v1/runs/{id}/steps/{step}/skip"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/locks"),
        ("POST", "/v1/locks/release"),
        ("GET", "/v1/breakers"),
        ("POST", "/v1/breakers/{plan}/reset"),
    ] {
        assert!(
            documented.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is missing from /openapi.json"
        );
    }

    // Every documented operation reaches a handler: not the router's own 404 or 405.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    for (method, path) in &documented {
        let (status, body) = call(&http, server.url(), method, path);
        assert_ne!(
            status, 405,
            "{method} {path} is documented but not routed: {body}"
        );
        assert_ne!(
            body["title"], "No such route",
            "{method} {path} is documented but not routed ({status}): {body}"
        );
    }
    // ... and the probe above can tell: an undocumented path gets the router's 404.
    let (status, body) = call(&http, server.url(), "GET", "/v1/no-such-thing");
    assert_eq!(
        (status, body["title"].as_str()),
        (404, Some("No such route")),
        "{body}"
    );
}

/// schemathesis (installed by tests/scripts/schemathesis.sh) generates requests from
/// the served document — coverage, fuzzing and stateful phases, a bounded number of
/// cases with a fixed seed — and checks every response: no 5xx, status codes, content
/// types, headers and bodies as documented. `positive_data_acceptance` is left out:
/// a plan that fits the document's shape is still refused (422) when its steps name
/// actions that do not exist, which is the point of validation.
#[test]
fn fuzzing_the_api_from_its_own_openapi_document_finds_no_server_error() {
    let script = repo_root().join("tests/scripts/schemathesis.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/scripts/schemathesis.sh");
    assert!(
        out.status.success(),
        "installing schemathesis failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schemathesis = String::from_utf8(out.stdout).expect("utf-8 path");
    let schemathesis = schemathesis.trim();

    // The server as deployed: auth on, the fuzzer holding an admin token so every
    // route is reachable, and its `ignored_auth` check trying bad tokens too.
    let medic = Medic::new();
    let token = medic.create_token("fuzzer", "admin");
    let server = Server::start(&medic, Some(&token), &[]);
    let (_, doc) = server.get_json("/openapi.json");
    // schemathesis leaves out the operation serving the document it was given.
    let n_operations = operations(&doc)
        .iter()
        .filter(|(_, path)| path != "/openapi.json")
        .count();

    let started = Instant::now();
    let out = Command::new(schemathesis)
        .args([
            "run",
            &format!("{}/openapi.json", server.url()),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "40",
            "--seed",
            "20261123",
            "--workers",
            "2",
            "--max-failures",
            "20",
            "--header",
            &format!("Authorization: Bearer {token}"),
        ])
        .env("NO_COLOR", "1")
        .env(
            "SCHEMATHESIS_HOOKS",
            repo_root().join("tests/scripts/schemathesis_hooks.py"),
        )
        // Its cache (.schemathesis/) goes to the scratch dir, not the checkout.
        .current_dir(medic.dir())
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found failures ({:?}):\n{report}\n--- medic serve ---\n{}",
        started.elapsed(),
        server.running.describe()
    );
    // It really exercised every operation and many cases.
    assert!(
        report.contains(&format!("Tested: {n_operations}")),
        "schemathesis did not test all {n_operations} operations:\n{report}"
    );
    let cases: usize = Regex::new(r"(\d+) generated")
        .unwrap()
        .captures(&report)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no case count in the report:\n{report}"));
    assert!(cases >= 100, "only {cases} cases generated:\n{report}");
    // The server survived it.
    assert_eq!(
        server.get_json("/healthz"),
        (200, Value::String("ok".into()))
    );
    assert!(
        !server.running.describe().contains("panicked"),
        "medic serve panicked under fuzzing:\n{}",
        server.running.describe()
    );
    eprintln!(
        "schemathesis: {cases} cases over {n_operations} operations in {:?}",
        started.elapsed()
    );
}
