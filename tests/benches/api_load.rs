//! Load on the real `medic serve` over HTTP: run submissions/s with latency
//! percentiles, then `GET /v1/runs/{id}` requests/s. The generator is closed-loop: a
//! fixed number of keep-alive connections (one thread and one ureq agent each), each
//! sending its next request as soon as the previous answer has been read, so a latency
//! is what a caller waits at that concurrency. Every answer that is not a 2xx is
//! counted and fails the bench, and the runs counted as created are checked against
//! `medic runs list`, read from the database by a separate process.
//!
//! Run: `make bench` (or `cargo bench -p medic-tests --bench api_load` after `make
//! build`). Knobs: MEDIC_LOAD_CONNECTIONS (default 16), MEDIC_LOAD_SECONDS per phase
//! (default 10), MEDIC_LOAD_BINARY (another build of medic, e.g. a baseline to compare).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use medic_tests::{Medic, poll_until};
use serde_json::{Value, json};

/// How the server is started: as deployed, tokens required (each request's token is
/// looked up and every submission audited, so both are in the figures).
const SERVE: &[&str] = &["serve", "--listen", "127.0.0.1:0"];

/// The bearer token every request carries: an operator's, as a chat-ops bot has.
fn token(medic: &Medic) -> Option<String> {
    Some(medic.create_token("load", "operator"))
}

/// What a real caller submits: a small inline plan (two chained `probe/noop` steps)
/// as a JSON object, with no params.
fn plan() -> Value {
    json!({
        "apiVersion": "medic/v1",
        "kind": "RecoveryPlan",
        "metadata": { "name": "load" },
        "plugins": { "probe": { "use": "probe@0.1" } },
        "steps": [
            { "id": "check", "uses": "probe/noop" },
            { "id": "act", "needs": ["check"], "uses": "probe/noop" }
        ]
    })
}

const WARM_UP: Duration = Duration::from_secs(1);

fn main() {
    let connections = knob("MEDIC_LOAD_CONNECTIONS", 16);
    let phase = Duration::from_secs(knob("MEDIC_LOAD_SECONDS", 10) as u64);
    let medic = match std::env::var_os("MEDIC_LOAD_BINARY") {
        Some(path) => Medic::with_binary(path.into()),
        None => Medic::new(),
    };
    let mut server = medic.spawn(SERVE);
    let base = server.wait_for_line(
        Duration::from_secs(60),
        "the `medic serving on` line",
        |l| {
            l.strip_prefix("medic serving on ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned)
        },
    );
    let client = Client {
        base,
        bearer: token(&medic),
    };
    println!(
        "server: {} serve on {}, data dir {}",
        medic.binary().display(),
        client.base,
        medic.data_dir().display()
    );
    println!(
        "machine: {} cores, {:.0}% idle in the second before the bench (load average {})",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        idle_share(Duration::from_secs(1)) * 100.0,
        load_average()
    );
    println!(
        "load: closed loop, {connections} keep-alive connections (a thread each), {} s per phase after {} s of warm-up",
        phase.as_secs(),
        WARM_UP.as_secs()
    );

    let body = json!({ "plan": plan(), "params": {} }).to_string();
    // A key unique to the phase, the connection and the request.
    let submit = |phase: &'static str| {
        let body = &body;
        move |i: usize, n: u64, c: &Client, agent: &ureq::Agent| {
            let key = format!("load-{}-{phase}-{i}-{n}", std::process::id());
            c.post(agent, "/v1/runs", &key, body)
        }
    };
    // Compiles the plugin, fills caches and pools: not measured, but its runs are
    // created and checked like the others.
    let warm = drive(connections, WARM_UP, &client, submit("warm"));
    let cpu_before = (cpu_time(server.pid()), cpu_time(std::process::id()));
    let measured = drive(connections, phase, &client, submit("measured"));
    let cpu = cpu_time(server.pid()) - cpu_before.0;
    let own_cpu = cpu_time(std::process::id()) - cpu_before.1;
    let created: Vec<String> = measured.ok.iter().map(|(_, body)| run_id(body)).collect();
    measured.print("submit: POST /v1/runs", "runs created", created.len());
    println!(
        "submit: server CPU {:.2} s over {:.1} s ({:.0} us per run created, including driving runs finished meanwhile); load generator CPU {:.2} s",
        cpu.as_secs_f64(),
        measured.elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / created.len().max(1) as f64,
        own_cpu.as_secs_f64()
    );

    // The runs go on in the background; all of them must finish, and succeed.
    let after = Instant::now();
    poll_until(
        Duration::from_secs(300),
        "every submitted run to finish",
        || {
            ["running", "rolling_back"]
                .iter()
                .all(|s| {
                    let (status, text) = client.get(&format!("/v1/runs?status={s}&limit=1"));
                    status == 200 && text.contains("\"runs\":[]")
                })
                .then_some(())
        },
        || server.describe(),
    );
    println!(
        "submit: the last run finished {:.2} s after the last submission was answered",
        after.elapsed().as_secs_f64()
    );

    let mut all: Vec<String> = warm.ok.iter().map(|(_, b)| run_id(b)).collect();
    all.extend(created.iter().cloned());
    verify(&medic, &all, warm.errors.len() + measured.errors.len());

    let get = |i: usize, n: u64, c: &Client, agent: &ureq::Agent| {
        let id = &created[(i * 7919 + n as usize) % created.len()];
        match c.get_with(agent, &format!("/v1/runs/{id}")) {
            // Bodies are checked here and not kept: there are too many.
            (200, body) if body.contains(id.as_str()) && body.contains("\"succeeded\"") => {
                (200, String::new())
            }
            (200, body) => (0, format!("200 without the succeeded run {id}: {body}")),
            other => other,
        }
    };
    let reads = drive(connections, phase, &client, get);
    reads.print("get: GET /v1/runs/{id}", "views read", reads.ok.len());

    let errors = warm.errors.len() + measured.errors.len() + reads.errors.len();
    assert!(
        errors == 0,
        "{errors} request(s) failed; see the `errors` lines above\n{}",
        server.describe()
    );
    println!(
        "summary: {connections} connections: {:.0} submissions/s (p50 {}, p99 {}), {:.0} GET /v1/runs/{{id}}/s (p50 {}, p99 {}), 0 errors",
        measured.rate(),
        ms(pct(&measured.latencies, 50.0)),
        ms(pct(&measured.latencies, 99.0)),
        reads.rate(),
        ms(pct(&reads.latencies, 50.0)),
        ms(pct(&reads.latencies, 99.0)),
    );
}

/// One connection's view of the server.
#[derive(Clone)]
struct Client {
    base: String,
    bearer: Option<String>,
}

impl Client {
    /// An agent per connection: ureq keeps its connection alive between requests.
    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    fn post(&self, agent: &ureq::Agent, path: &str, key: &str, body: &str) -> Answer {
        let mut req = agent
            .post(format!("{}{path}", self.base))
            .header("Idempotency-Key", key)
            .content_type("application/json");
        if let Some(t) = &self.bearer {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        answer(req.send(body))
    }

    fn get_with(&self, agent: &ureq::Agent, path: &str) -> Answer {
        let mut req = agent.get(format!("{}{path}", self.base));
        if let Some(t) = &self.bearer {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        answer(req.call())
    }

    /// A one-off GET on a fresh connection (for polling, not measured).
    fn get(&self, path: &str) -> Answer {
        self.get_with(&Client::agent(), path)
    }
}

/// The status (0: no answer at all) and the body.
type Answer = (u16, String);

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    match r {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            match resp.body_mut().read_to_string() {
                Ok(text) => (status, text),
                Err(e) => (0, format!("reading the body of a {status} answer: {e}")),
            }
        }
        Err(e) => (0, format!("no answer: {e}")),
    }
}

/// What one phase saw.
struct Phase {
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// 2xx answers: status and body.
    ok: Vec<Answer>,
    errors: Vec<Answer>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, what: &str, noun: &str, n: usize) {
        let l = &self.latencies;
        println!(
            "{what}: {n} {noun} in {:.1} s = {:.0}/s; latency p50 {}, p90 {}, p99 {}, max {}; errors {}",
            self.elapsed.as_secs_f64(),
            n as f64 / self.elapsed.as_secs_f64(),
            ms(pct(l, 50.0)),
            ms(pct(l, 90.0)),
            ms(pct(l, 99.0)),
            ms(l.last().copied().unwrap_or_default()),
            self.errors.len()
        );
        if !self.errors.is_empty() {
            let mut by_status: BTreeMap<u16, (usize, &str)> = BTreeMap::new();
            for (status, body) in &self.errors {
                by_status.entry(*status).or_insert((0, body)).0 += 1;
            }
            for (status, (count, example)) in by_status {
                println!("{what}: errors: {count} x status {status}, e.g. {example}");
            }
        }
    }
}

/// Runs `request` on `connections` threads for `time`; each thread sends its next
/// request when the previous answer is read (`request(thread, n, client, agent)`).
fn drive<F>(connections: usize, time: Duration, client: &Client, request: F) -> Phase
where
    F: Fn(usize, u64, &Client, &ureq::Agent) -> Answer + Sync,
{
    let start = Instant::now();
    let deadline = start + time;
    let per_thread: Vec<(Vec<Duration>, Vec<Answer>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|i| {
                let request = &request;
                scope.spawn(move || {
                    let agent = Client::agent();
                    let mut latencies = Vec::new();
                    let mut answers = Vec::new();
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        let a = request(i, n, client, &agent);
                        latencies.push(sent.elapsed());
                        answers.push(a);
                        n += 1;
                    }
                    (latencies, answers)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a load thread panicked"))
            .collect()
    });
    // The last answers arrive after the deadline: the phase lasts until they do.
    let elapsed = start.elapsed();
    let mut phase = Phase {
        elapsed,
        latencies: Vec::new(),
        ok: Vec::new(),
        errors: Vec::new(),
    };
    for (latencies, answers) in per_thread {
        phase.latencies.extend(latencies);
        for a in answers {
            if (200..300).contains(&a.0) {
                phase.ok.push(a);
            } else {
                phase.errors.push(a);
            }
        }
    }
    phase.latencies.sort();
    phase
}

/// Checks the runs the bench counted against the database, read by `medic runs list`
/// in another process: the same ids, each run once, all succeeded.
fn verify(medic: &Medic, created: &[String], errors: usize) {
    let out = medic.run([
        "runs",
        "list",
        "--json",
        "--limit",
        &(created.len() + 1000).to_string(),
    ]);
    out.expect_code(0, String::new);
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).expect("runs list --json");
    let in_db: HashSet<&str> = listed.iter().filter_map(|r| r["id"].as_str()).collect();
    let answered: HashSet<&str> = created.iter().map(String::as_str).collect();
    assert_eq!(
        answered.len(),
        created.len(),
        "the server answered 201 with the same run id twice"
    );
    let missing: Vec<&&str> = answered.difference(&in_db).take(5).collect();
    let extra: Vec<&&str> = in_db.difference(&answered).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "runs answered 201 but not in the database (e.g. {missing:?}) or in the database \
         but never answered 201 (e.g. {extra:?}); {errors} request(s) had failed"
    );
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &listed {
        *statuses
            .entry(r["status"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    println!(
        "verify: `medic runs list` holds {} runs, exactly the {} ids answered 201 (warm-up included); statuses {statuses:?}",
        in_db.len(),
        created.len()
    );
    assert_eq!(
        statuses.get("succeeded"),
        Some(&created.len()),
        "every run should have succeeded: {statuses:?}"
    );
}

fn run_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).expect("a 2xx answer to POST /v1/runs is JSON");
    assert_eq!(
        v["created"], true,
        "a fresh Idempotency-Key created no run: {v}"
    );
    v["id"].as_str().expect("the run id").to_owned()
}

fn knob(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a positive number")),
        Err(_) => default,
    }
}

/// User + system CPU time process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/PID/stat");
    // Fields after the `(comm)`, which may contain spaces: utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The share of the machine's CPU time that was idle over `window`, from
/// `/proc/stat`: how quiet the shared machine was (the load average lags by minutes).
fn idle_share(window: Duration) -> f64 {
    fn sample() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // idle + iowait, and the total.
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        (idle, ticks.iter().sum())
    }
    let (idle0, total0) = sample();
    std::thread::sleep(window);
    let (idle1, total1) = sample();
    (idle1 - idle0) as f64 / (total1 - total0).max(1) as f64
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
