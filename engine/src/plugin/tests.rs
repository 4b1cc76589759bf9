//! Tests of the plugin host against the real `probe` plugin (`make plugins` builds
//! it into `plugins/dist/`) and a reference counter target.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

/// Cargo runs tests in the package root (`engine/`). Resolved at run time, not with
/// `env!("CARGO_MANIFEST_DIR")`: a test binary reused from another checkout would
/// carry that checkout's path.
fn dist_dir() -> PathBuf {
    std::env::current_dir()
        .expect("current dir")
        .join("../plugins/dist")
}

/// One host for the whole test binary, so probe.wasm compiles once.
fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let probe = dist_dir().join("probe.wasm");
        assert!(
            probe.is_file(),
            "{} is missing: run `make plugins` first (with your CARGO_TARGET_DIR exported)",
            probe.display()
        );
        Host::new(HostConfig::new(vec![dist_dir()], Duration::from_secs(10)))
            .expect("plugin host starts")
    })
}

fn call(action: &str, params: Value, connect: &[String]) -> Call {
    call_attempt(action, params, connect, 1)
}

fn call_attempt(action: &str, params: Value, connect: &[String], attempt: u32) -> Call {
    Call {
        plugin: "probe".into(),
        version: "0.1".into(),
        action: action.into(),
        params,
        ctx: CallContext {
            run_id: "run-1".into(),
            step_id: "step-1".into(),
            attempt,
            idempotency_key: format!("run-1/step-1/{attempt}"),
            dry_run: false,
        },
        grants: crate::plan::Grants {
            connect: connect.to_vec(),
            ..Default::default()
        },
        timeout: None,
        progress: None,
        build: None,
    }
}

/// Reference implementation of the counter target's line protocol (the black-box
/// tests use the real one in the `tests` crate): `ADD` applies unconditionally and
/// is logged, `HAS key` answers whether an `ADD` with that key was applied.
#[derive(Default)]
struct Counters {
    values: HashMap<String, i64>,
    /// (idempotency key, counter, amount) of every applied `ADD`, in order.
    log: Vec<(String, String, i64)>,
}

struct CounterTarget {
    address: String,
    state: Arc<Mutex<Counters>>,
}

impl CounterTarget {
    fn start() -> CounterTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind counter target");
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(Counters::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve_counter(stream, &state));
            }
        });
        CounterTarget { address, state }
    }

    fn value(&self, counter: &str) -> i64 {
        let state = self.state.lock().unwrap();
        state.values.get(counter).copied().unwrap_or(0)
    }

    fn log(&self) -> Vec<(String, String, i64)> {
        self.state.lock().unwrap().log.clone()
    }
}

fn serve_counter(stream: TcpStream, state: &Mutex<Counters>) {
    let mut writer = stream.try_clone().unwrap();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut s = state.lock().unwrap();
        let reply = match words.as_slice() {
            ["ADD", counter, amount, key] => match amount.parse::<i64>() {
                Ok(amount) => {
                    let value = s.values.entry(counter.to_string()).or_default();
                    *value += amount;
                    let value = *value;
                    s.log.push((key.to_string(), counter.to_string(), amount));
                    format!("OK {value}")
                }
                Err(_) => "ERR amount is not an integer".to_string(),
            },
            ["HAS", key] => {
                let has = s.log.iter().any(|(k, _, _)| k == key);
                (if has { "YES" } else { "NO" }).to_string()
            }
            ["GET", counter] => format!("VALUE {}", s.values.get(*counter).copied().unwrap_or(0)),
            _ => format!("ERR unknown request {line:?}"),
        };
        drop(s);
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_is_read_once_and_describes_probe() {
    let m = host().manifest("probe", "0.1").await.expect("manifest");
    assert_eq!(m.name, "probe");
    assert_eq!(m.version, "0.1.0");
    let bytes = std::fs::read(dist_dir().join("probe.wasm")).unwrap();
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(m.sha256, sha);

    let add = m.action("counter-add").expect("counter-add listed");
    assert_eq!(add.effect, EffectClass::Mutating);
    assert_eq!(add.inverse.as_deref(), Some("counter-sub"));
    assert_eq!(add.params_schema["additionalProperties"], json!(false));
    assert_eq!(
        add.params_schema["required"],
        json!(["address", "counter", "amount"])
    );
    assert_eq!(m.action("noop").unwrap().effect, EffectClass::ReadOnly);

    let again = host().manifest("probe", "^0.1.0").await.unwrap();
    assert!(Arc::ptr_eq(&m, &again), "the plugin was loaded twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn version_mismatch_unknown_plugin_and_unknown_action_are_told_apart() {
    let err = host().manifest("probe", "0.2").await.unwrap_err();
    assert!(
        matches!(&err, Error::Version { found, wanted, .. } if found == "0.1.0" && wanted == "0.2"),
        "{err:?}"
    );
    let mut c = call("noop", json!({}), &[]);
    c.version = "1".into();
    assert!(matches!(host().invoke(c).await, Err(Error::Version { .. })));

    let err = host().manifest("no-such-plugin", "0.1").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let err = host().manifest("../dist/probe", "0.1").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    let err = host()
        .invoke(call("explode", json!({}), &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownAction { action, .. } if action == "explode"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn noop_returns_its_echo() {
    let out = host().invoke(call("noop", json!({}), &[])).await.unwrap();
    assert_eq!(out, json!({}));
    let out = host()
        .invoke(call("noop", json!({"echo": {"a": [1, 2]}}), &[]))
        .await
        .unwrap();
    assert_eq!(out, json!({"echo": {"a": [1, 2]}}));
    // Read-only actions leave nothing to observe: re-running them is the answer.
    let seen = host().observe(call("noop", json!({}), &[])).await.unwrap();
    assert_eq!(seen, Observation::NotDone);
}

#[tokio::test(flavor = "multi_thread")]
async fn counter_add_changes_the_target_and_observe_sees_it() {
    let target = CounterTarget::start();
    let grant = [target.address.clone()];
    let params = json!({"address": target.address, "counter": "jobs", "amount": 5});

    let before = host()
        .observe(call("counter-add", params.clone(), &grant))
        .await
        .unwrap();
    assert_eq!(before, Observation::NotDone);
    assert_eq!(target.value("jobs"), 0);

    let out = host()
        .invoke(call("counter-add", params.clone(), &grant))
        .await
        .unwrap();
    assert_eq!(out, json!({"counter": "jobs", "value": 5}));
    assert_eq!(target.value("jobs"), 5);
    assert_eq!(
        target.log(),
        vec![("run-1/step-1/1".to_string(), "jobs".to_string(), 5)]
    );

    let after = host()
        .observe(call("counter-add", params.clone(), &grant))
        .await
        .unwrap();
    assert_eq!(
        after,
        Observation::Done(json!({"counter": "jobs", "value": 5}))
    );

    // The inverse undoes it; a different attempt is a different key.
    let out = host()
        .invoke(call_attempt("counter-sub", params, &grant, 2))
        .await
        .unwrap();
    assert_eq!(out, json!({"counter": "jobs", "value": 0}));
    assert_eq!(
        target.log()[1],
        ("run-1/step-1/2".to_string(), "jobs".to_string(), -5)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scripted_failures_are_retryable_or_not_as_asked() {
    let target = CounterTarget::start();
    let grant = [target.address.clone()];
    let params = json!({
        "address": target.address, "counter": "c", "amount": 1, "fail_until_attempt": 3
    });

    let err = host()
        .invoke(call_attempt("counter-add", params.clone(), &grant, 2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Failed {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.retryable());
    assert!(
        target.log().is_empty(),
        "a failed attempt reached the target"
    );

    let out = host()
        .invoke(call_attempt("counter-add", params, &grant, 3))
        .await
        .unwrap();
    assert_eq!(out, json!({"counter": "c", "value": 1}));

    let err = host()
        .invoke(call(
            "counter-add",
            json!({"address": target.address, "counter": "doomed", "amount": 1, "fail": true}),
            &grant,
        ))
        .await
        .unwrap_err();
    match &err {
        Error::Failed {
            message,
            retryable: false,
        } => assert!(message.contains("doomed"), "{message}"),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(target.value("doomed"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_granted_endpoints_can_be_reached() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_grant = [other.local_addr().unwrap().to_string()];

    let started = Instant::now();
    let err = host()
        .invoke(call("tcp-check", json!({"address": address}), &other_grant))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Failed { retryable: false, message } if message.contains("denied")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "denial took {:?}",
        started.elapsed()
    );
    assert!(
        listener.accept().is_err(),
        "the sandbox let a connection to an ungranted port through"
    );

    // Positive control: the same check with the grant connects.
    let out = host()
        .invoke(call(
            "tcp-check",
            json!({"address": address}),
            std::slice::from_ref(&address),
        ))
        .await
        .unwrap();
    assert_eq!(out["address"], json!(address));
    assert!(out["connect_ms"].is_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_retryable() {
    // Bind then drop, so the port is (almost certainly) closed.
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let err = host()
        .invoke(call(
            "tcp-check",
            json!({"address": address}),
            std::slice::from_ref(&address),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Failed {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_check_compares_the_status() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            // Read the head up to the blank line, then answer.
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let url = format!("http://{address}/health");
    let grant = [address.clone()];
    let out = host()
        .invoke(call(
            "http-check",
            json!({"url": url, "expect_status": 204}),
            &grant,
        ))
        .await
        .unwrap();
    assert_eq!(out, json!({"status": 204}));
    let err = host()
        .invoke(call("http-check", json!({"url": url}), &grant))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Failed { retryable: true, message } if message.contains("204")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_its_timeout_is_stopped() {
    for action in ["sleep", "spin"] {
        let mut c = call(action, json!({"ms": 30_000}), &[]);
        c.timeout = Some(Duration::from_millis(300));
        let started = Instant::now();
        let err = host().invoke(c).await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { after } if after == Duration::from_millis(300)),
            "{action}: {err:?}"
        );
        assert!(err.retryable());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{action}: stopping took {:?}",
            started.elapsed()
        );
    }
    // A sleep within its timeout completes.
    let out = host()
        .invoke(call("sleep", json!({"ms": 20}), &[]))
        .await
        .unwrap();
    assert_eq!(out, json!({"slept_ms": 20}));
}

#[tokio::test(flavor = "multi_thread")]
async fn breaking_the_memory_limit_is_a_limit_error() {
    let err = host()
        .invoke(call("alloc", json!({"mib": 2 * (MEMORY_LIMIT >> 20)}), &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Limit { what, .. } if what == "memory"),
        "{err:?}"
    );
    assert!(!err.retryable());
    // The store died with the call; the next call gets a fresh one.
    let out = host()
        .invoke(call("alloc", json!({"mib": 4}), &[]))
        .await
        .unwrap();
    assert_eq!(out, json!({"allocated_mib": 4}));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_plugin_traps_with_its_reason_and_message() {
    let err = host()
        .invoke(call("crash", json!({"message": "boom at step 7"}), &[]))
        .await
        .unwrap_err();
    match &err {
        Error::Trap { message } => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(message.contains("boom at step 7"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(!err.retryable());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_calls_compile_the_plugin_once() {
    // A fresh host, so this test sees the very first load.
    let host = Arc::new(
        Host::new(HostConfig::new(
            vec![PathBuf::from("/nonexistent"), dist_dir()],
            Duration::from_secs(10),
        ))
        .unwrap(),
    );
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.manifest("probe", "0.1").await.unwrap() })
        })
        .collect();
    let mut manifests = Vec::new();
    for load in loads {
        manifests.push(load.await.unwrap());
    }
    assert!(manifests.iter().all(|m| Arc::ptr_eq(m, &manifests[0])));
}

/// Records the guest log events the host turns into `tracing` events.
#[derive(Clone, Default)]
struct GuestEvents(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GuestEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "medic::plugin::guest" {
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
        let level = *event.metadata().level();
        self.0.lock().unwrap().push((level, fields.0));
    }
}

// current_thread: the guest runs on this thread, under this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn guest_log_lines_become_tracing_events_with_the_call_context() {
    use tracing_subscriber::layer::SubscriberExt;
    let events = GuestEvents::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    // With a single dispatcher registered, tracing-core decides a callsite first hit
    // on another thread by that thread's default (none: never enabled) and caches it.
    // A second registered dispatcher makes it ask every registered one, this one too.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

    let target = CounterTarget::start();
    let params = json!({"address": target.address, "counter": "logged", "amount": 2});
    host()
        .invoke(call(
            "counter-add",
            params,
            std::slice::from_ref(&target.address),
        ))
        .await
        .unwrap();

    let events = events.0.lock().unwrap().clone();
    let (level, fields) = events
        .iter()
        .find(|(_, f)| f.contains("ADD logged 2"))
        .unwrap_or_else(|| panic!("no guest log event for the ADD in {events:?}"));
    assert_eq!(*level, tracing::Level::DEBUG);
    for expected in [
        "plugin=probe",
        "run_id=run-1",
        "step_id=step-1",
        "attempt=1",
    ] {
        assert!(
            fields.contains(expected),
            "{expected} missing from {fields}"
        );
    }
}

/// probe.wasm with its manifest's version `0.1.0` changed to `version` (same length).
/// Every other `0.1.0` in the file is a WIT package version (`@0.1.0`) and stays.
/// An install of an unsigned component, allowed (signatures have their own tests).
fn unsigned() -> InstallOptions {
    InstallOptions {
        allow_unsigned: true,
        ..InstallOptions::default()
    }
}

fn unsigned_forced() -> InstallOptions {
    InstallOptions {
        force: true,
        ..unsigned()
    }
}

fn probe_as_version(version: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(dist_dir().join("probe.wasm")).unwrap();
    let at: Vec<usize> = bytes
        .windows(5)
        .enumerate()
        .filter(|(i, w)| *w == b"0.1.0" && (*i == 0 || bytes[i - 1] != b'@'))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "exactly one manifest version in probe.wasm");
    assert_eq!(version.len(), 5);
    bytes[at[0]..at[0] + 5].copy_from_slice(version.as_bytes());
    bytes
}

#[tokio::test]
async fn install_writes_into_the_first_dir_upgrades_and_refuses_downgrades_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("plugins");
    let host = Host::new(HostConfig::new(vec![mine.clone()], Duration::from_secs(10))).unwrap();
    assert!(host.installed().await.is_empty());
    assert!(matches!(
        host.inspect("probe").await,
        Err(Error::NotFound { .. })
    ));

    let v010 = std::fs::read(dist_dir().join("probe.wasm")).unwrap();
    let first = host.install(v010.clone(), unsigned()).await.unwrap();
    assert_eq!(
        (
            first.outcome,
            first.manifest.name.as_str(),
            first.path.clone()
        ),
        (InstallOutcome::Installed, "probe", mine.join("probe.wasm"))
    );
    assert_eq!(std::fs::read(mine.join("probe.wasm")).unwrap(), v010);
    let again = host.install(v010.clone(), unsigned()).await.unwrap();
    assert_eq!(again.outcome, InstallOutcome::Unchanged);

    let up = host
        .install(probe_as_version("0.2.0"), unsigned())
        .await
        .unwrap();
    assert_eq!(
        (
            up.outcome,
            up.previous.as_deref(),
            up.manifest.version.as_str()
        ),
        (InstallOutcome::Upgraded, Some("0.1.0"), "0.2.0")
    );
    // The host sees the new version at once, without a restart.
    assert_eq!(
        host.inspect("probe").await.unwrap().manifest.version,
        "0.2.0"
    );
    let listed = host.installed().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].manifest.as_ref().unwrap().version, "0.2.0");

    match host.install(v010.clone(), unsigned()).await {
        Err(Error::NotNewer {
            installed,
            offered,
            what,
            ..
        }) => {
            assert_eq!(
                (installed.as_str(), offered.as_str(), what),
                ("0.2.0", "0.1.0", "downgrade")
            )
        }
        other => panic!("a downgrade must be refused: {other:?}"),
    }
    assert_eq!(
        host.inspect("probe").await.unwrap().manifest.version,
        "0.2.0"
    );
    let forced = host.install(v010, unsigned_forced()).await.unwrap();
    assert_eq!(forced.outcome, InstallOutcome::Replaced);
    assert_eq!(
        host.inspect("probe").await.unwrap().manifest.version,
        "0.1.0"
    );

    match host.install(b"\0asm not really".to_vec(), unsigned()).await {
        Err(Error::NotInstallable { message }) => {
            assert!(message.contains("compiling the component"), "{message}")
        }
        other => panic!("garbage must not install: {other:?}"),
    }
    match host.install(b"(module)".to_vec(), unsigned()).await {
        Err(Error::NotInstallable { message }) => {
            assert!(message.contains("not a WebAssembly binary"), "{message}")
        }
        other => panic!("text must not install: {other:?}"),
    }
    let names: Vec<_> = std::fs::read_dir(&mine)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["probe.wasm"], "no temporary file left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plan_that_passed_is_kept_and_one_that_failed_is_checked_again() {
    // A fresh host over an empty plugin dir: the plan's plugin is not installed yet.
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(HostConfig::new(
        vec![dir.path().to_path_buf()],
        Duration::from_secs(10),
    ))
    .unwrap();
    let text = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: p }\n\
                plugins: { probe: { use: probe@0.1 } }\nsteps: [{ id: a, uses: probe/noop }]\n";
    let format = crate::plan::Format::Yaml;
    let missing = check_plan(&host, "p.yaml", text, format).await.unwrap_err();
    assert!(missing.to_string().contains("probe"), "{missing}");
    let checked = host.checked_plans().expect("the host keeps checked plans");
    assert!(checked.get(format, text).is_none(), "a failure was kept");

    std::fs::copy(dist_dir().join("probe.wasm"), dir.path().join("probe.wasm")).unwrap();
    let plan = check_plan(&host, "p.yaml", text, format).await.unwrap();
    assert_eq!(
        checked.get(format, text).map(|k| k.plan),
        Some(plan.clone())
    );
    // Served from the cache, under another file name too (names are only for diagnostics).
    let again = check_plan(&host, "other.yaml", text, format).await.unwrap();
    assert_eq!(again, plan);
    assert!(checked.get(crate::plan::Format::Json, text).is_none());
}

/// An invoker whose plugin can be replaced, as installing a new build does.
struct Replaceable {
    manifest: Mutex<Arc<Manifest>>,
    checked: CheckedPlans,
}

impl Invoker for Replaceable {
    async fn manifest(&self, _plugin: &str, _version: &str) -> Result<Arc<Manifest>, Error> {
        Ok(self.manifest.lock().unwrap().clone())
    }
    async fn invoke(&self, _call: Call) -> Result<Value, Error> {
        unreachable!("plan checks call no plugin")
    }
    async fn observe(&self, _call: Call) -> Result<Observation, Error> {
        unreachable!("plan checks call no plugin")
    }
    fn checked_plans(&self) -> Option<&CheckedPlans> {
        Some(&self.checked)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_plan_is_checked_again_once_its_plugin_is_replaced() {
    let probe = host().manifest("probe", "0.1").await.unwrap();
    let mut without_noop = (*probe).clone();
    without_noop.actions.retain(|a| a.name != "noop");
    let invoker = Replaceable {
        manifest: Mutex::new(probe.clone()),
        checked: CheckedPlans::default(),
    };
    let text = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: p }\n\
                plugins: { probe: { use: probe@0.1 } }\nsteps: [{ id: a, uses: probe/noop }]\n";
    let format = crate::plan::Format::Yaml;
    check_plan(&invoker, "p.yaml", text, format).await.unwrap();
    assert!(invoker.checked.get(format, text).is_some());

    *invoker.manifest.lock().unwrap() = Arc::new(without_noop);
    let err = check_plan(&invoker, "p.yaml", text, format)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no action `noop`"), "{err}");

    // Back to a build with `noop`: a new manifest, so checked (and kept) anew.
    *invoker.manifest.lock().unwrap() = Arc::new((*probe).clone());
    check_plan(&invoker, "p.yaml", text, format).await.unwrap();
    let kept = invoker.checked.get(format, text).unwrap();
    assert!(Arc::ptr_eq(
        &kept.against[0].2,
        &invoker.manifest.lock().unwrap()
    ));
}

/// A host over `plugins` with a compiled-component cache in `cache`.
fn cached_host(plugins: PathBuf, cache: PathBuf) -> Host {
    let mut config = HostConfig::new(vec![plugins], Duration::from_secs(10));
    config.cache_dir = Some(cache);
    Host::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_component_gives_the_same_manifest_and_a_corrupt_cache_file_is_compiled_over() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("plugin-cache");

    let first = cached_host(dist_dir(), dir.clone());
    let compiled = first.inspect("probe").await.unwrap();
    assert_eq!(compiled.source, Source::CompiledAndCached);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache dir is medic's alone");
    // The compiled component (and a kept copy of the wasm, for pinned runs).
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert!(
        file.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&compiled.manifest.sha256),
        "named by the wasm's sha256: {file:?}"
    );

    // Another process (another host) loads it from the cache, to the same manifest,
    // and its calls work.
    let second = cached_host(dist_dir(), dir.clone());
    let hit = second.inspect("probe").await.unwrap();
    assert_eq!(hit.source, Source::Cached);
    assert_eq!(*hit.manifest, *compiled.manifest);
    assert_eq!(hit.capabilities, compiled.capabilities);
    let out = second
        .invoke(call("noop", json!({"echo": "cached"}), &[]))
        .await
        .unwrap();
    assert_eq!(out, json!({"echo": "cached"}));

    // A corrupt file (truncated, then garbage) is compiled over, never an error.
    let good = std::fs::read(file).unwrap();
    for corrupt in [&good[..good.len() / 2], b"\x7fELF not really".as_slice()] {
        std::fs::write(file, corrupt).unwrap();
        let third = cached_host(dist_dir(), dir.clone());
        let recovered = third.inspect("probe").await.unwrap();
        assert_eq!(recovered.source, Source::Recompiled);
        assert_eq!(*recovered.manifest, *compiled.manifest);
        assert!(
            std::fs::read(file).unwrap().len() > corrupt.len(),
            "the corrupt file was overwritten"
        );
        assert_eq!(
            cached_host(dist_dir(), dir.clone())
                .inspect("probe")
                .await
                .unwrap()
                .source,
            Source::Cached
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_use_the_instance_pool() {
    assert_eq!(host().allocator(), Allocator::Pooling);
    let on_demand = {
        let mut c = HostConfig::new(vec![dist_dir()], Duration::from_secs(10));
        c.allocator = Allocator::OnDemand;
        Host::new(c).unwrap()
    };
    assert_eq!(on_demand.allocator(), Allocator::OnDemand);
    let out = on_demand
        .invoke(call("noop", json!({}), &[]))
        .await
        .unwrap();
    assert_eq!(out, json!({}));
    // The pool caps memory like the store's limiter does.
    let err = host()
        .invoke(call("alloc", json!({"mib": 128}), &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Limit { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_names_the_capabilities_probe_imports() {
    let probe = host().inspect("probe").await.unwrap();
    let tcp = probe
        .capabilities
        .iter()
        .find(|c| c.kind == "TCP")
        .unwrap_or_else(|| panic!("{:?}", probe.capabilities));
    assert!(tcp.interface.starts_with("wasi:sockets/tcp"), "{tcp:?}");
    assert!(
        probe
            .capabilities
            .iter()
            .all(|c| !c.interface.starts_with("wasi:io/")),
        "plumbing is left out: {:?}",
        probe.capabilities
    );
    assert_eq!(probe.signer, Signer::Unsigned);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_install_needs_a_trusted_signature_or_an_explicit_allow_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let keys = dir.path().join("trusted-keys");
    std::fs::create_dir(&keys).unwrap();
    let (public, secret, id) = keygen().unwrap();
    std::fs::write(keys.join("acme.pub"), public).unwrap();
    let (_, stranger, stranger_id) = keygen().unwrap();
    let mut config = HostConfig::new(vec![plugins.clone()], Duration::from_secs(10));
    config.trusted_keys = Some(keys);
    let host = Host::new(config).unwrap();

    let wasm = std::fs::read(dist_dir().join("probe.wasm")).unwrap();
    let signed = |sig: &str| InstallOptions {
        signature: Some(sig.to_string()),
        signature_label: "probe.wasm.minisig".into(),
        ..InstallOptions::default()
    };
    let refused = |r: Result<Install, Error>| match r {
        Err(Error::Untrusted { message }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    };

    let unsigned_refused = refused(host.install(wasm.clone(), InstallOptions::default()).await);
    assert!(unsigned_refused.contains("unsigned"), "{unsigned_refused}");

    let (good, _) = sign(&wasm, &secret, "probe").unwrap();
    let mut tampered = wasm.clone();
    let at = tampered.windows(8).position(|w| w == b"Test and").unwrap();
    tampered[at] = b't';
    let tampered_refused = refused(host.install(tampered, signed(&good)).await);
    assert!(
        tampered_refused.contains("probe.wasm.minisig") && tampered_refused.contains(&id),
        "{tampered_refused}"
    );

    let (foreign, _) = sign(&wasm, &stranger, "probe").unwrap();
    let unknown_refused = refused(host.install(wasm.clone(), signed(&foreign)).await);
    assert!(
        unknown_refused.contains(&stranger_id) && unknown_refused.contains("trusted-keys"),
        "{unknown_refused}"
    );
    assert!(
        !plugins.join("probe.wasm").exists(),
        "nothing refused is written"
    );

    let done = host.install(wasm.clone(), signed(&good)).await.unwrap();
    assert_eq!(done.signer.as_deref(), Some(id.as_str()));
    assert_eq!(
        std::fs::read_to_string(plugins.join("probe.wasm.minisig")).unwrap(),
        good
    );
    let listed = host.installed().await;
    assert_eq!(listed.len(), 1, "the signature file is not a plugin");
    assert_eq!(listed[0].signer, Signer::Trusted { key_id: id.clone() });
    assert_eq!(
        host.inspect("probe").await.unwrap().signer.to_string(),
        format!("signed by {id}")
    );

    // An allowed unsigned build replaces it and its signature goes with the old wasm.
    let v2 = probe_as_version("0.2.0");
    let done = host.install(v2, unsigned()).await.unwrap();
    assert_eq!(done.signer, None);
    assert!(!plugins.join("probe.wasm.minisig").exists());
    assert_eq!(
        host.inspect("probe").await.unwrap().signer,
        Signer::Unsigned
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn more_calls_in_flight_than_pool_slots_wait_for_a_slot_instead_of_failing() {
    let n = POOL_INSTANCES as usize + 20;
    let started = Instant::now();
    let calls: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(host().invoke(call_attempt(
                "sleep",
                json!({"ms": 300}),
                &[],
                i as u32 + 1,
            )))
        })
        .collect();
    let mut failed = Vec::new();
    for c in calls {
        if let Err(e) = c.await.unwrap() {
            failed.push(e.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {n} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    // The 20 beyond the pool waited for the first sleepers to finish.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_pinned_to_a_build_uses_it_after_another_is_installed_and_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let cache = dir.path().join("plugin-cache");
    let host = cached_host(plugins.clone(), cache.clone());
    let v010 = host
        .install(
            std::fs::read(dist_dir().join("probe.wasm")).unwrap(),
            unsigned(),
        )
        .await
        .unwrap()
        .manifest
        .sha256
        .clone();
    let pinned = |sha: &str| Call {
        build: Some(sha.to_string()),
        ..call("noop", json!({"echo": 1}), &[])
    };
    assert_eq!(
        host.invoke(pinned(&v010)).await.unwrap(),
        json!({"echo": 1})
    );

    host.install(probe_as_version("0.2.0"), unsigned())
        .await
        .unwrap();
    // Unpinned, a plan asking for 0.1 no longer finds it; pinned, the run goes on.
    let unpinned = host.invoke(call("noop", json!({}), &[])).await.unwrap_err();
    assert!(matches!(unpinned, Error::Version { .. }), "{unpinned}");
    assert_eq!(
        host.invoke(pinned(&v010)).await.unwrap(),
        json!({"echo": 1})
    );

    // A new process finds the build in the cache dir, not in the plugin dir.
    let later = cached_host(plugins, cache.clone());
    assert_eq!(
        later.invoke(pinned(&v010)).await.unwrap(),
        json!({"echo": 1})
    );
    std::fs::remove_dir_all(&cache).unwrap();
    let gone = cached_host(dir.path().join("plugins"), cache)
        .invoke(pinned(&v010))
        .await
        .unwrap_err();
    assert!(
        matches!(gone, Error::BuildGone { .. }) && gone.to_string().contains(&v010),
        "{gone}"
    );
}
mod http;
