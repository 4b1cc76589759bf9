//! Auth of `medic serve` against the real binary over HTTP: tokens made with
//! `medic token create`, the role every route needs (read from the server's own
//! OpenAPI document and checked against the contract), the four-eyes rule for
//! approvals, revocation, the audit log, `--no-auth` and HTTPS.

use std::time::Duration;

use medic_tests::{CounterTarget, Medic, Reply, Server, plan};
use serde_json::{Value, json};

const ROLES: [&str; 4] = ["viewer", "operator", "approver", "admin"];

/// The role each route needs, as docs/api.md and the API contract say: every GET is
/// viewer (the audit log is admin), approving and rejecting is approver, installing
/// plugins and the break-glass calls (lock release, breaker reset) are admin, every
/// other call is operator. `None`: open to anyone.
fn contract_role(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        (_, "/healthz" | "/readyz" | "/openapi.json") => None,
        ("get", "/v1/audit")
        | ("post", "/v1/plugins")
        | ("post", "/v1/locks/release")
        | ("post", "/v1/breakers/{plan}/reset") => Some("admin"),
        ("post", p) if p.ends_with("/approve") || p.ends_with("/reject") => Some("approver"),
        ("get", _) => Some("viewer"),
        _ => Some("operator"),
    }
}

/// Every operation of the server's OpenAPI document: (method, path template, the
/// role its `security` names, or `None` for an open one).
fn operations(doc: &Value) -> Vec<(String, String, Option<String>)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let security = op["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} declares no security"));
            let role = security.first().map(|req| {
                req["bearer"][0]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path}: {req}"))
                    .to_owned()
            });
            ops.push((method.clone(), path.clone(), role));
        }
    }
    ops
}

/// A concrete URL for a path template: placeholders get values no run has.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{id}" => "r-none",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn request(client: &medic_tests::Client, method: &str, path: &str) -> Reply {
    let body = (method != "get").then(|| json!({}));
    client.call(&method.to_uppercase(), path, body.as_ref())
}

fn assert_401(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    assert_eq!(r.content_type, "application/problem+json", "{what}: {r:?}");
    assert!(
        r.www_authenticate
            .as_deref()
            .is_some_and(|h| h.starts_with("Bearer")),
        "{what}: a 401 carries `WWW-Authenticate: Bearer`: {r:?}"
    );
}

fn tokens(medic: &Medic) -> Vec<(&'static str, String)> {
    ROLES
        .iter()
        .map(|role| (*role, medic.create_token(&format!("t-{role}"), role)))
        .collect()
}

fn audit(server: &Server, admin: &str) -> Vec<Value> {
    let (status, _, body) = server.client(Some(admin)).get("/v1/audit?limit=1000");
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().expect("entries").clone()
}

/// Whether the audit log has an entry with these fields.
fn audited(entries: &[Value], expect: Value) -> bool {
    entries.iter().any(|e| {
        expect
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &e[k.as_str()] == v)
    })
}

#[test]
fn every_route_needs_the_contract_role_401_without_a_token_403_below_it() {
    let medic = Medic::new();
    let tokens = tokens(&medic);
    let token = |role: &str| tokens.iter().find(|(r, _)| *r == role).unwrap().1.as_str();
    let server = Server::start(&medic, None, &[]);
    let anonymous = server.client(None);
    let bogus = server.client(Some("medic_0000"));

    let (status, _, doc) = anonymous.get("/openapi.json");
    assert_eq!(status, 200, "the document is open: {doc}");
    let ops = operations(&doc);
    for required in [
        ("get", "/v1/runs"),
        ("post", "/v1/runs"),
        ("get", "/v1/runs/{id}"),
        ("get", "/v1/runs/{id}/events"),
        ("post", "/v1/runs/{id}/cancel"),
        ("post", "/v1/runs/{id}/steps/{step}/approve"),
        ("post", "/v1/runs/{id}/steps/{step}/reject"),
        ("post", "/v1/runs/{id}/steps/{step}/retry"),
        ("post", "/v1/runs/{id}/steps/{step}/skip"),
        ("post", "/v1/plans/validate"),
        ("get", "/v1/audit"),
        ("get", "/healthz"),
    ] {
        assert!(
            ops.iter()
                .any(|(m, p, _)| (m.as_str(), p.as_str()) == required),
            "{required:?} is missing from /openapi.json"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    for (method, template, role) in &ops {
        let what = format!("{method} {template}");
        assert_eq!(
            role.as_deref(),
            contract_role(method, template),
            "{what}: the role in /openapi.json"
        );
        let path = concrete(template);
        let Some(role) = role else {
            let r = request(&anonymous, method, &path);
            assert!(r.status < 400, "{what} is open: {r:?}");
            continue;
        };
        assert_401(&request(&anonymous, method, &path), &what);
        assert_401(
            &request(&bogus, method, &path),
            &format!("{what} (bogus token)"),
        );
        let rank = ROLES.iter().position(|r| r == role).unwrap();
        if rank > 0 {
            let below = ROLES[rank - 1];
            let r = request(&server.client(Some(token(below))), method, &path);
            assert_eq!(r.status, 403, "{what} as {below}: {r:?}");
            let detail = r.body["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains(&format!("`{role}`")) && detail.contains(&format!("`{below}`")),
                "{what}: the 403 names the role needed and the token's: {detail}"
            );
            assert_eq!(
                r.body["required_role"], *role,
                "{what}: the 403 carries `required_role` for clients: {r:?}"
            );
        }
        for enough in &ROLES[rank..] {
            let r = request(&server.client(Some(token(enough))), method, &path);
            assert!(
                r.status != 401 && r.status != 403,
                "{what} as {enough} passes auth: {r:?}"
            );
        }
    }

    // Refused mutating calls are audited too: no name for a 401, the name for a 403.
    let entries = audit(&server, token("admin"));
    assert!(
        audited(
            &entries,
            json!({"token": null, "method": "POST", "path": "/v1/runs", "status": 401})
        ),
        "{entries:#?}"
    );
    assert!(
        audited(
            &entries,
            json!({"token": "t-viewer", "role": "viewer", "method": "POST", "path": "/v1/runs", "status": 403})
        ),
        "{entries:#?}"
    );
    assert!(
        audited(
            &entries,
            json!({"token": "t-operator", "method": "POST", "path": "/v1/runs/r-none/steps/x/approve",
                   "run_id": "r-none", "step_id": "x", "status": 403})
        ),
        "{entries:#?}"
    );
    assert!(
        !entries.iter().any(|e| e["method"] == "GET"),
        "reads are not audited: {entries:#?}"
    );
}

fn approval_plan(allow_self_approval: bool) -> String {
    let text = std::fs::read_to_string(plan("approval.yaml")).expect("test plan");
    if !allow_self_approval {
        return text;
    }
    let gate = "      prompt: \"Counter bumped on ${{ params.target }}; carry on?\"\n";
    assert!(text.contains(gate), "approval.yaml changed: {text}");
    text.replace(gate, &format!("{gate}      allow_self_approval: true\n"))
}

/// Submits the approval plan as `token` and waits until it waits at `approve`.
fn at_the_gate(server: &Server, token: &str, target: &CounterTarget, allow_self: bool) -> String {
    let body = json!({ "plan": approval_plan(allow_self), "params": {"target": target.address()} });
    let (status, _, created) = server.client(Some(token)).post("/v1/runs", &[], &body);
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().unwrap().to_owned();
    server.wait_step(&run, "approve", "approval");
    run
}

#[test]
fn approving_needs_the_approver_role_and_someone_other_than_the_submitter() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let op = medic.create_token("op", "operator");
    let alice = medic.create_token("alice", "approver");
    let bob = medic.create_token("bob", "approver");
    let admin = medic.create_token("root", "admin");
    let server = Server::start(&medic, Some(&admin), &[]);
    let approve = |run: &str| format!("/v1/runs/{run}/steps/approve/approve");
    let reject = |run: &str| format!("/v1/runs/{run}/steps/approve/reject");

    // An operator submits; an operator may not approve; another approver may.
    let first = at_the_gate(&server, &op, &target, false);
    let (status, _, body) = server
        .client(Some(&op))
        .post(&approve(&first), &[], &json!({}));
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = server.client(Some(&alice)).post(
        &approve(&first),
        &[],
        &json!({"comment": "go", "by": "somebody-else"}),
    );
    assert_eq!(status, 202, "{body}");
    let view = server.wait_status(&first, "succeeded");
    assert_eq!(view["run"]["submitted_by"], "op", "{view}");
    let decided = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approval_decided")
        .unwrap_or_else(|| panic!("no approval_decided event: {view}"));
    assert_eq!(
        decided["data"]["by"], "alice",
        "the token's name, not the body's `by`: {decided}"
    );

    // An approver submits: neither approving nor rejecting it herself is allowed.
    let second = at_the_gate(&server, &alice, &target, false);
    for path in [approve(&second), reject(&second)] {
        let (status, _, body) = server.client(Some(&alice)).post(&path, &[], &json!({}));
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("alice") && d.contains("allow_self_approval")),
            "{body}"
        );
    }
    let (_, _, view) = server.get(&format!("/v1/runs/{second}"));
    assert!(
        view["steps"][1]["status"] == "approval",
        "the refused answers never reached the run: {view}"
    );
    let (status, _, body) = server
        .client(Some(&bob))
        .post(&approve(&second), &[], &json!({}));
    assert_eq!(status, 202, "{body}");
    server.wait_status(&second, "succeeded");

    // A plan can allow its submitter to answer.
    let third = at_the_gate(&server, &alice, &target, true);
    let (status, _, body) = server
        .client(Some(&alice))
        .post(&approve(&third), &[], &json!({}));
    assert_eq!(status, 202, "{body}");
    server.wait_status(&third, "succeeded");
    assert_eq!(target.value("after"), 3);

    // Every approval, the refused ones included, is in the audit log with the token.
    let entries = audit(&server, &admin);
    for (token, role, run, path, status) in [
        ("op", "operator", &first, approve(&first), 403),
        ("alice", "approver", &first, approve(&first), 202),
        ("alice", "approver", &second, approve(&second), 403),
        ("alice", "approver", &second, reject(&second), 403),
        ("bob", "approver", &second, approve(&second), 202),
        ("alice", "approver", &third, approve(&third), 202),
    ] {
        assert!(
            audited(
                &entries,
                json!({"token": token, "role": role, "method": "POST", "path": path,
                       "run_id": run, "step_id": "approve", "status": status})
            ),
            "{token} {path} {status} is not in the audit log: {entries:#?}"
        );
    }
    assert!(
        audited(
            &entries,
            json!({"token": "op", "method": "POST", "path": "/v1/runs", "run_id": first, "status": 201})
        ),
        "a submission is audited with the run it created: {entries:#?}"
    );
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let (status, _, body) = server.client(Some(&bob)).get("/v1/audit");
    assert_eq!(status, 403, "the audit log is for admins: {body}");
}

#[test]
fn tokens_are_stored_hashed_unique_by_name_and_revoked_at_once() {
    let medic = Medic::new();
    let secret = medic.create_token("ci", "operator");
    let out = medic.run(["token", "create", "--name", "ci", "--role", "viewer"]);
    assert_ne!(out.code, 0, "a second live `ci` is refused\n{out}");
    assert!(out.stderr.contains("exists already"), "{out}");
    let out = medic.run(["token", "create", "--name", "x", "--role", "root"]);
    assert_ne!(out.code, 0, "{out}");

    let server = Server::start(&medic, Some(&secret), &[]);
    let (status, _, body) = server.get("/v1/runs");
    assert_eq!(status, 200, "{body}");

    let list = medic.run(["token", "list", "--json"]);
    list.expect_code(0, String::new);
    let listed: Value = serde_json::from_str(&list.stdout).expect("token list --json");
    assert_eq!(listed[0]["name"], "ci", "{listed}");
    assert_eq!(listed[0]["role"], "operator", "{listed}");
    assert!(listed[0]["last_used_at"].is_i64(), "use is noted: {listed}");
    let human = medic.run(["token", "list"]);
    assert!(
        human.stdout.contains("ci")
            && !human.stdout.contains(&secret)
            && !list.stdout.contains(&secret),
        "{human}"
    );

    // Only the sha256 is stored: no file of the database holds the secret.
    let data = medic.data_dir();
    let mut seen = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.to_string_lossy().contains("medic.db") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the token's secret",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 1, "no database files in {}", data.display());

    medic
        .run(["token", "revoke", "ci"])
        .expect_code(0, || server.running.describe());
    assert_401(&server.call("GET", "/v1/runs", None), "revoked token");
    let r = server.call("POST", "/v1/runs/r-none/cancel", Some(&json!({})));
    assert_401(&r, "revoked token, mutating call");
    let out = medic.run(["token", "revoke", "ci"]);
    assert_ne!(out.code, 0, "nothing left to revoke\n{out}");

    // The name is free again; the new token works, the old one still does not.
    let again = medic.create_token("ci", "admin");
    assert_eq!(server.client(Some(&again)).get("/v1/runs").0, 200);
    assert_401(&server.call("GET", "/v1/runs", None), "old secret");
    let entries = audit(&server, &again);
    assert!(
        audited(
            &entries,
            json!({"token": null, "path": "/v1/runs/r-none/cancel", "status": 401})
        ),
        "{entries:#?}"
    );
}

#[test]
fn no_auth_is_only_for_loopback_and_makes_everyone_anonymous_admin() {
    let medic = Medic::new();
    let out = medic.run(["serve", "--no-auth", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("--no-auth") && out.stderr.contains("loopback"),
        "{out}"
    );

    let server = Server::start(&medic, None, &["--no-auth"]);
    let target = CounterTarget::start();
    let body = json!({ "plan": approval_plan(false), "params": {"target": target.address()} });
    let (status, _, created) = server.post("/v1/runs", &[], &body);
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().unwrap().to_owned();
    server.wait_step(&run, "approve", "approval");
    // No four-eyes rule without identities: the anonymous submitter may approve.
    let (status, _, body) = server.post(
        &format!("/v1/runs/{run}/steps/approve/approve"),
        &[],
        &json!({"by": "carol"}),
    );
    assert_eq!(status, 202, "{body}");
    let view = server.wait_status(&run, "succeeded");
    assert_eq!(view["run"]["submitted_by"], "anonymous", "{view}");
    let (status, _, body) = server.get("/v1/audit");
    assert_eq!(status, 200, "{body}");
    assert!(
        audited(
            body["entries"].as_array().unwrap(),
            json!({"token": "anonymous", "role": "admin", "path": "/v1/runs", "status": 201})
        ),
        "{body}"
    );
}

#[test]
fn https_with_a_configured_certificate_and_a_graceful_sigterm() {
    let medic = Medic::new();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("a self-signed certificate");
    let cert_file = medic.write("cert.pem", &cert.cert.pem());
    let key_file = medic.write("key.pem", &cert.signing_key.serialize_pem());
    let tls = [
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ];

    // No token exists yet: the server says how to make one.
    let server = Server::start_tls(&medic, None, &tls, cert.cert.der());
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    assert!(
        server
            .running
            .stdout_lines()
            .iter()
            .any(|l| l.contains("no API tokens yet") && l.contains("medic token create")),
        "{}",
        server.running.describe()
    );
    let (status, _, body) = server.get("/healthz");
    assert_eq!((status, body), (200, json!("ok")));
    assert_401(&server.call("GET", "/v1/runs", None), "over TLS");
    let token = medic.create_token("tls", "viewer");
    let (status, _, body) = server.client(Some(&token)).get("/v1/runs");
    assert_eq!(status, 200, "{body}");

    // Nothing is served in clear on the TLS port.
    let plain = server.base.replacen("https://", "http://", 1);
    let cleartext = ureq::get(format!("{plain}/healthz"))
        .config()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call();
    assert!(
        cleartext.as_ref().map_or(true, |r| r.status() != 200),
        "plain HTTP answered on the TLS port: {cleartext:?}"
    );

    let stopped = server.running.terminate();
    stopped.expect_code(0, String::new);
    assert!(stopped.stdout.contains("medic stopped"), "{stopped}");
}
