//! Bad input at every door of `medic serve` (issue 8): malformed YAML and JSON, a
//! 10,000-step plan, 10 MB of params, deeply nested templates, template injection
//! through params, unknown plugins, invalid cron expressions. Each gets a clear,
//! specific problem (or, for the huge but valid plan, works), the server stays up,
//! and nothing is stored half-way.

use medic_tests::{Medic, Server};
use serde_json::{Value, json};

fn problem(body: &Value) -> String {
    format!(
        "{} {} {}",
        body["title"].as_str().unwrap_or_default(),
        body["detail"].as_str().unwrap_or_default(),
        body["errors"]
    )
}

/// POSTs `body` over a plain socket, reading the answer while still sending: a
/// server that refuses a body by its size answers and closes before reading it all,
/// which HTTP clients that finish sending first report as a broken pipe.
fn raw_post(server: &Server, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let address = server.url().strip_prefix("http://").unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let read = std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = reader.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    });
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n{}connection: close\r\n\r\n",
        body.len(),
        server
            .token()
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default()
    );
    let _ = stream.write_all(head.as_bytes());
    for chunk in body.as_bytes().chunks(64 * 1024) {
        if stream.write_all(chunk).is_err() {
            break;
        }
    }
    read.join().unwrap()
}

/// The prompt of the run's first approval, once it waits.
fn approval_prompt(server: &Server, run: &str) -> String {
    let view = server.wait_run(run, "an approval to wait", |v| {
        v["steps"]
            .as_array()?
            .iter()
            .any(|s| s["status"] == "approval")
            .then(|| v.clone())
    });
    view["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approval_requested")
        .and_then(|e| e["data"]["prompt"].as_str())
        .expect("approval_requested")
        .to_owned()
}

const HEAD: &str = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: door }\n";

#[test]
fn bad_input_at_every_door_gets_a_clear_error_and_stores_nothing() {
    let medic = Medic::new();
    let server = Server::admin(&medic);

    // Malformed YAML in a plan: where and what.
    let (status, ctype, body) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan": format!("{HEAD}steps: [ {{ id: a, uses: probe/noop }}\n") }),
    );
    assert_eq!(
        (status, ctype.as_str()),
        (422, "application/problem+json"),
        "{body}"
    );
    assert!(
        problem(&body).contains("invalid YAML"),
        "{}",
        problem(&body)
    );
    assert!(body["errors"][0]["line"].as_u64().is_some(), "{body}");

    // Malformed JSON bodies on each POST door.
    for door in ["/v1/runs", "/v1/plans", "/v1/schedules"] {
        let (status, ctype, body) = server.post_raw(door, "{\"plan\": ");
        assert_eq!(
            (status, ctype.as_str()),
            (400, "application/problem+json"),
            "{door}: {body}"
        );
        assert!(
            problem(&body).to_lowercase().contains("json"),
            "{door}: {}",
            problem(&body)
        );
    }

    // Unknown plugin: named, with what to do.
    let (status, _, body) = server.post(
        "/v1/plans",
        &[],
        &json!({ "plan": format!("{HEAD}plugins: {{ x: {{ use: nosuch@1 }} }}\nsteps:\n  - {{ id: a, uses: x/go }}\n") }),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        problem(&body).contains("plugin `nosuch` not found") && problem(&body).contains("install"),
        "{}",
        problem(&body)
    );

    // Deeply nested template expressions: a clear error, not a crashed server.
    let deep = format!("{}params.n{}", "(".repeat(5000), ")".repeat(5000));
    let (status, _, body) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan": format!(
            "{HEAD}params: {{ n: {{ type: integer, default: 1 }} }}\nplugins: {{ probe: {{ use: probe@0.1 }} }}\nsteps:\n  - id: a\n    uses: probe/noop\n    when: \"{deep}\"\n"
        ) }),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        problem(&body).contains("when") && problem(&body).contains("recursion"),
        "{}",
        problem(&body)
    );
    // Templates inside templates are not a second round of evaluation.
    let (status, _, body) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan": format!(
            "{HEAD}plugins: {{ probe: {{ use: probe@0.1 }} }}\nsteps:\n  - id: a\n    approval: {{ prompt: \"${{{{ '${{{{ params.x }}}}' }}}}\" }}\n"
        ) }),
    );
    assert_eq!(status, 201, "{body}");
    let nested = body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        approval_prompt(&server, &nested),
        "${{ params.x }}",
        "a string literal that looks like a template stays a string"
    );

    // Template injection through a param: its value is data, never evaluated.
    let injected = "${{ steps.secret.output }} and ${{ params.other }}";
    let (status, _, created) = server.post(
        "/v1/runs",
        &[],
        &json!({
            "plan": format!(
                "{HEAD}params: {{ who: {{ type: string }} }}\nsteps:\n  - id: ask\n    approval: {{ prompt: \"restart ${{{{ params.who }}}}?\", allow_self_approval: true }}\n"
            ),
            "params": { "who": injected },
        }),
    );
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().unwrap().to_owned();
    let prompt = approval_prompt(&server, &run);
    assert_eq!(
        prompt,
        format!("restart {injected}?"),
        "rendered once, literally"
    );
    for run in [&run, &nested] {
        let (status, _, _) = server.post(&format!("/v1/runs/{run}/cancel"), &[], &json!({}));
        assert_eq!(status, 202);
    }

    // 10 MB of params: refused by size with a problem document, nothing stored.
    let blob = "x".repeat(10 * 1024 * 1024);
    let big_body = json!({ "plan": format!("{HEAD}params: {{ blob: {{ type: string }} }}\nsteps:\n  - {{ id: a, approval: {{ prompt: hi }} }}\n"), "params": { "blob": blob } });
    let answer = raw_post(&server, "/v1/runs", &big_body.to_string());
    assert!(
        answer.contains("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(400)]
    );
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("larger than the 4 MiB medic accepts"),
        "the limit is named: {answer}"
    );

    // Invalid cron expressions: which field, what was expected.
    for cron in ["61 * * * *", "* * *", "every day"] {
        let (status, _, body) = server.post(
            "/v1/schedules",
            &[],
            &json!({ "name": "bad-cron", "plan": "door@1", "cron": cron }),
        );
        assert_eq!(status, 422, "{cron}: {body}");
        assert!(
            problem(&body).contains("cron"),
            "{cron}: {}",
            problem(&body)
        );
    }

    // A 10,000-step plan is valid and registers; the server keeps answering.
    let mut big = format!("{HEAD}plugins: {{ probe: {{ use: probe@0.1 }} }}\nsteps:\n");
    for i in 0..10_000 {
        if i == 0 {
            big.push_str("  - { id: s0, uses: probe/noop }\n");
        } else {
            big.push_str(&format!(
                "  - {{ id: s{i}, uses: probe/noop, needs: [s{}] }}\n",
                i - 1
            ));
        }
    }
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": big }));
    assert_eq!(status, 201, "{}", problem(&body));

    // Nothing else was stored: the two template runs, one plan, no schedule.
    let (_, runs) = server.get_json("/v1/runs");
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(2), "{runs}");
    let (_, plans) = server.get_json("/v1/plans");
    assert_eq!(plans["plans"].as_array().map(Vec::len), Some(1), "{plans}");
    let (_, schedules) = server.get_json("/v1/schedules");
    assert_eq!(
        schedules["schedules"].as_array().map(Vec::len),
        Some(0),
        "{schedules}"
    );
    let (status, _) = server.get_json("/healthz");
    assert_eq!(status, 200, "still serving");
}
