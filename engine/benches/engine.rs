//! Engine throughput and per-step overhead on this machine, next to the machine's own
//! limit (single-row SQLite commits at medic's synchronous level). Prints figures;
//! asserts nothing. Run: `make bench` (or `cargo bench -p medic --bench engine`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use medic::executor::{Executor, Node, SystemClock};
use medic::plan::{self, Format};
use medic::plugin::{Host, HostConfig};
use medic::run::Entry;
use medic::store::{self, Store};
use serde_json::{Value, json};

const STEPS: usize = 1000;
const ROUNDS: usize = 3;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    // Cargo runs benches in the package root (`engine/`).
    let dist = std::env::current_dir()
        .expect("current dir")
        .join("../plugins/dist");
    assert!(
        dist.join("probe.wasm").exists(),
        "{}/probe.wasm is missing: run `make plugins` first",
        dist.display()
    );
    let host =
        Arc::new(Host::new(HostConfig::new(vec![dist], Duration::from_secs(30))).expect("host"));

    let dir = tempfile::tempdir().expect("temp dir");
    let floor = store::measure_commit_latency(dir.path(), 2000).expect("commit probe");
    let floor_med = median(&floor);
    println!(
        "machine: single-row SQLite commits (WAL, synchronous=FULL): {:.0}/s, median {}, p99 {}",
        1.0 / floor_med.as_secs_f64(),
        us(floor_med),
        us(pct(&floor, 99.0))
    );
    println!(
        "machine: a step needs >= 2 durable transitions, so the per-step floor is {}",
        us(floor_med * 2)
    );

    let calls = plugin_calls(&host, 2000).await;
    println!(
        "plugin: probe/noop call (fresh instance per call): median {}, p99 {}",
        us(median(&calls)),
        us(pct(&calls, 99.0))
    );

    let chain = chain_plan(STEPS);
    let fanout = fanout_plan(STEPS);
    let mut seq_rates = Vec::new();
    let mut seq_meds = Vec::new();
    let mut fan_rates = Vec::new();
    for round in 1..=ROUNDS {
        let (rate, per_step) = run_once(&host, dir.path(), &chain, Shape::Chain).await;
        let (med, p99) = (median(&per_step), pct(&per_step, 99.0));
        println!(
            "round {round}: sequential {STEPS}-step chain: {rate:.0} steps/s, per-step median {}, p99 {}, peak RSS {} MiB",
            us(med),
            us(p99),
            peak_rss_mib()
        );
        seq_rates.push(rate);
        seq_meds.push(med);
        let (rate, latency) = run_once(&host, dir.path(), &fanout, Shape::FanOut).await;
        println!(
            "round {round}: 1-to-{STEPS} fan-out: {rate:.0} steps/s, step start-to-done median {}, p99 {}, peak RSS {} MiB",
            us(median(&latency)),
            us(pct(&latency, 99.0)),
            peak_rss_mib()
        );
        fan_rates.push(rate);
    }
    seq_rates.sort_by(f64::total_cmp);
    fan_rates.sort_by(f64::total_cmp);
    seq_meds.sort();
    let seq_med = seq_meds[ROUNDS / 2];
    println!(
        "summary: sequential median {:.0} steps/s, per-step median {} = {:.2}x the 2-commit floor ({})",
        seq_rates[ROUNDS / 2],
        us(seq_med),
        seq_med.as_secs_f64() / (floor_med * 2).as_secs_f64(),
        us(floor_med * 2)
    );
    println!(
        "summary: fan-out median {:.0} steps/s (target > 5000)",
        fan_rates[ROUNDS / 2]
    );
    println!("summary: peak RSS {} MiB", peak_rss_mib());
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Chain,
    FanOut,
}

/// Runs one plan in a fresh database; returns steps/s and per-step durations.
async fn run_once(
    host: &Arc<Host>,
    dir: &std::path::Path,
    plan: &plan::Plan,
    shape: Shape,
) -> (f64, Vec<Duration>) {
    let db = dir.join(format!("bench-{}.db", rand_suffix()));
    let store = Store::open(&db).expect("store");
    let exec = Executor::new(
        store,
        host.clone(),
        Arc::new(SystemClock),
        Node::register(dir).expect("node"),
    );
    let run = exec.create(plan, json!({})).await.expect("create");
    let mut rx = exec.subscribe();
    let collector = tokio::spawn(async move {
        let mut started = std::collections::HashMap::new();
        let mut done = Vec::new();
        let mut per_step = Vec::new();
        while let Ok(p) = rx.recv().await {
            let now = Instant::now();
            match p.entry {
                Entry::AttemptStarted { step, .. } => {
                    started.insert(step, now);
                }
                Entry::AttemptSucceeded { step, .. } => {
                    done.push(now);
                    if let Some(s) = started.get(&step) {
                        per_step.push(now - *s);
                    }
                }
                Entry::RunStatus { status, .. } if status.is_terminal() => break,
                _ => {}
            }
        }
        (done, per_step)
    });
    let start = Instant::now();
    let status = exec.drive(&run).await.expect("drive");
    let elapsed = start.elapsed();
    assert_eq!(status, medic::run::RunStatus::Succeeded);
    let (done, latency) = collector.await.expect("collector");
    let rate = done.len() as f64 / elapsed.as_secs_f64();
    let per_step = match shape {
        // Step k+1 starts in the commit that records step k: the gap between two
        // completions is everything a step costs (two transitions' work + the call).
        Shape::Chain => done.windows(2).map(|w| w[1] - w[0]).collect(),
        Shape::FanOut => latency,
    };
    (rate, per_step)
}

/// Latency of direct plugin calls, without the engine around them.
async fn plugin_calls(host: &Arc<Host>, n: usize) -> Vec<Duration> {
    use medic::plugin::{Call, CallContext, Invoker};
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let call = Call {
            plugin: "probe".into(),
            version: "0.1".into(),
            action: "noop".into(),
            params: json!({}),
            ctx: CallContext {
                run_id: "bench".into(),
                step_id: "s".into(),
                attempt: 1,
                idempotency_key: format!("bench/s/{i}"),
                dry_run: false,
            },
            grants: Default::default(),
            timeout: None,
            progress: None,
            build: None,
        };
        let start = Instant::now();
        host.invoke(call).await.expect("noop call");
        out.push(start.elapsed());
    }
    out
}

fn chain_plan(n: usize) -> plan::Plan {
    let steps: Vec<Value> = (0..n)
        .map(|i| if i == 0 { json!({"id": "s0", "uses": "probe/noop"}) } else {
            json!({"id": format!("s{i}"), "uses": "probe/noop", "needs": [format!("s{}", i - 1)]})
        })
        .collect();
    parse(json!({"concurrency": 1, "steps": steps}))
}

fn fanout_plan(n: usize) -> plan::Plan {
    let mut steps = vec![json!({"id": "root", "uses": "probe/noop"})];
    steps.extend(
        (0..n).map(|i| json!({"id": format!("s{i}"), "uses": "probe/noop", "needs": ["root"]})),
    );
    parse(json!({"concurrency": n, "steps": steps}))
}

fn parse(mut body: Value) -> plan::Plan {
    body["apiVersion"] = json!("medic/v1");
    body["kind"] = json!("RecoveryPlan");
    body["metadata"] = json!({"name": "bench"});
    body["plugins"] = json!({"probe": {"use": "probe@0.1"}});
    plan::parse("bench", &body.to_string(), Format::Json, None).expect("bench plan is valid")
}

fn median(v: &[Duration]) -> Duration {
    pct(v, 50.0)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
