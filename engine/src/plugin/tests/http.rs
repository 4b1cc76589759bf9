//! Outgoing `wasi:http` through the real probe plugin against a recording HTTP server
//! on 127.0.0.1, the CPU budget, and progress reports.

use std::io::Read;
use std::net::SocketAddr;

use super::*;
use crate::plugin::http::scripted;

/// A request the test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Lower-case names, in the order received.
    headers: Vec<(String, String)>,
    body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 that records every request and answers 200 with
/// `hello from PATH`.
struct HttpTarget {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl HttpTarget {
    fn start() -> HttpTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind http target");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shared = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = shared.clone();
                std::thread::spawn(move || serve_http(stream, &seen));
            }
        });
        HttpTarget { port, seen }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_http(stream: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let answer = format!("hello from {path}");
    seen.lock().unwrap().push(Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut stream = stream;
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Target: yes\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        )
        .as_bytes(),
    );
}

/// A host whose operator configuration attaches `Authorization: Bearer s3cret` to
/// requests for `target`'s origin, with a small CPU budget.
fn configured_host(target: &HttpTarget, cpu_budget: Duration) -> (Host, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("target-token"), "Bearer s3cret\n").unwrap();
    let mut operator = OperatorConfig::parse(&format!(
        "[[http.credentials]]\norigin = \"{}\"\nheader = \"Authorization\"\nsecret = \"target-token\"\n",
        target.origin()
    ))
    .unwrap();
    operator.secrets_dir = Some(secrets.path().to_path_buf());
    let host = Host::new(HostConfig {
        plugin_dirs: vec![dist_dir()],
        default_timeout: Duration::from_secs(20),
        operator: Arc::new(operator),
        cpu_budget,
        ..HostConfig::new(Vec::new(), Duration::from_secs(20))
    })
    .expect("plugin host starts");
    (host, secrets)
}

fn http_call(params: Value, origins: &[String]) -> Call {
    let mut c = call("http-request", params, &[]);
    c.grants.http = origins.to_vec();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_origin_gets_the_request_with_the_operators_credential_in_place_of_the_guests() {
    let target = HttpTarget::start();
    let (host, _secrets) = configured_host(&target, Duration::from_secs(60));
    let url = format!("{}/v2/health?verbose=1", target.origin());
    let out = host
        .invoke(http_call(
            json!({
                "url": url,
                "method": "POST",
                "headers": {"Authorization": "guest-made-this-up", "X-Probe": "1"},
                "body": "ping"
            }),
            &[target.origin()],
        ))
        .await
        .expect("request to a granted origin");
    assert_eq!(out["status"], json!(200));
    assert_eq!(out["body"], json!("hello from /v2/health?verbose=1"));
    assert_eq!(out["headers"]["x-target"], json!("yes"));

    let seen = target.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let r = &seen[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.body.as_str()),
        ("POST", "/v2/health?verbose=1", "ping")
    );
    let auth: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        auth,
        ["Bearer s3cret"],
        "the operator's credential replaces the guest's header"
    );
    assert!(r.headers.iter().any(|(k, v)| k == "x-probe" && v == "1"));
    assert!(
        !out.to_string().contains("s3cret"),
        "the plugin saw the credential: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ungranted_port_or_host_is_refused_with_the_origin_named() {
    let target = HttpTarget::start();
    let other = HttpTarget::start();
    let granted = [target.origin()];
    for (url, refused) in [
        (
            format!("{}/x", other.origin()),
            format!("http://127.0.0.1:{}", other.port),
        ),
        (
            format!("http://127.0.0.2:{}/x", target.port),
            format!("http://127.0.0.2:{}", target.port),
        ),
        (
            format!("https://127.0.0.1:{}/x", target.port),
            format!("https://127.0.0.1:{}", target.port),
        ),
    ] {
        let err = host()
            .invoke(http_call(json!({ "url": url }), &granted))
            .await
            .unwrap_err();
        match &err {
            Error::Failed {
                message,
                retryable: false,
            } => {
                assert!(message.contains(&format!("`{refused}`")), "{message}");
                assert!(message.contains("grants: { http"), "{message}");
            }
            other => panic!("{url}: expected a permanent failure, got {other:?}"),
        }
    }
    assert!(target.seen().is_empty() && other.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_name_that_resolves_elsewhere_during_the_call_is_refused() {
    let target = HttpTarget::start();
    let here = SocketAddr::from(([127, 0, 0, 1], target.port));
    let elsewhere = SocketAddr::from(([127, 0, 0, 2], target.port));

    // A name only the scripted resolver knows: the host connects to the address it
    // checked, never by name (a name-based connect would fail to resolve).
    let stable = format!("stable.medic.test:{}", target.port);
    scripted::script(&stable, vec![vec![here]]);
    let origin = format!("http://{stable}");
    let out = host()
        .invoke(http_call(json!({"url": format!("{origin}/ok")}), &[origin]))
        .await
        .expect("a name resolving to its granted address");
    assert_eq!(out["status"], json!(200));
    assert_eq!(target.seen().len(), 1);

    // Granted at call start as 127.0.0.1, resolving to 127.0.0.2 when sent.
    let moving = format!("moving.medic.test:{}", target.port);
    scripted::script(&moving, vec![vec![here], vec![elsewhere]]);
    let origin = format!("http://{moving}");
    let err = host()
        .invoke(http_call(
            json!({"url": format!("{origin}/x")}),
            std::slice::from_ref(&origin),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Failed { message, retryable: true }
            if message.contains(&format!("`{origin}`")) && message.contains("resolves to an address")),
        "{err:?}"
    );
    assert_eq!(
        target.seen().len(),
        1,
        "the refused request reached the target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn using_up_the_cpu_budget_is_a_limit_error_and_the_host_keeps_serving() {
    let target = HttpTarget::start();
    let (host, _secrets) = configured_host(&target, Duration::from_millis(300));
    let started = Instant::now();
    let err = host
        .invoke(call("spin", json!({"ms": 10_000}), &[]))
        .await
        .unwrap_err();
    match &err {
        Error::Limit { what, message } => {
            assert_eq!(what, "CPU time");
            assert!(message.contains("300ms"), "{message}");
        }
        other => panic!("expected the CPU limit, got {other:?}"),
    }
    assert!(!err.retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        started.elapsed()
    );
    // Waiting is not CPU: a sleep longer than the budget completes.
    let out = host
        .invoke(call("sleep", json!({"ms": 600}), &[]))
        .await
        .unwrap();
    assert_eq!(out, json!({"slept_ms": 600}));
    let out = host.invoke(call("noop", json!({}), &[])).await.unwrap();
    assert_eq!(out, json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_reports_reach_the_calls_sink() {
    let (sink, reports) = ProgressSink::new();
    let mut c = call("progress", json!({"steps": 5}), &[]);
    c.progress = Some(sink);
    host().invoke(c).await.unwrap();
    let last = reports.borrow().clone();
    assert_eq!(
        last,
        Some(ProgressReport {
            done: 5,
            total: 5,
            message: "step 5 of 5".into()
        })
    );
}

/// Records the host's warnings about plugins' HTTP requests.
#[derive(Clone, Default)]
struct HttpWarnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for HttpWarnings {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "medic::plugin::http" {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

// current_thread: the guest and the host's send hook run on this thread, under
// this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_refused_request_is_traced_with_the_origin_and_the_call() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = HttpWarnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    // See guest_log_lines_become_tracing_events_with_the_call_context.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

    let target = HttpTarget::start();
    let refused = "http://127.0.0.3:9";
    host()
        .invoke(http_call(
            json!({ "url": format!("{refused}/x") }),
            &[target.origin()],
        ))
        .await
        .unwrap_err();
    let warnings = warnings.0.lock().unwrap().clone();
    let warning = warnings
        .iter()
        .find(|w| w.contains(&format!("`{refused}`")))
        .unwrap_or_else(|| panic!("no warning names {refused}: {warnings:?}"));
    for expected in ["plugin=probe", "run_id=run-1", "step_id=step-1", "grants"] {
        assert!(
            warning.contains(expected),
            "{expected} missing from {warning}"
        );
    }
}
