//! 10,000 schedules due in the same minute, on the real `medic serve`: how late each
//! due time fires (p50/p99/max of the fire's recorded instant minus its due time, by
//! the server's clock; jitter 0) and the CPU the server spends from just before the
//! due time until every schedule has fired (which includes driving the 10,000 runs
//! of a one-step `probe/noop` plan they create).
//!
//! Run: `cargo bench -p medic-tests --bench schedule_fire` after `make build`.
//! Knobs: MEDIC_SCHED_COUNT (default 10000), MEDIC_SCHED_LEAD seconds between now and
//! the due time, enough to create them all (default 40).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use medic_tests::{Client, Medic, Server};
use serde_json::{Value, json};

const THREADS: usize = 8;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// utime + stime of a process, in seconds (from /proc, clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `f` for every index in `THREADS` threads, each with its own client.
fn each<T, F>(client: &Client, n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(&Client, usize) -> T + Send + Clone + 'static,
{
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = client.clone();
            let f = f.clone();
            std::thread::spawn(move || {
                (t..n)
                    .step_by(THREADS)
                    .map(|i| f(&client, i))
                    .collect::<Vec<T>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn main() {
    let count = knob("MEDIC_SCHED_COUNT", 10_000);
    let lead = knob("MEDIC_SCHED_LEAD", 40) as i64;
    let medic = Medic::new();
    let server = Server::admin(&medic);
    let pid = server.running.pid();
    let plan = "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata:\n  name: bench-noop\n\
        plugins:\n  probe:\n    use: probe@0.1\nsteps:\n  - id: noop\n    uses: probe/noop\n";
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": plan }));
    assert_eq!(status, 201, "{body}");

    let due = (now_ms() / 1000 + lead) * 1000;
    let t = due / 1000;
    let cron = format!("{} {} {} * * *", t % 60, (t / 60) % 60, (t / 3600) % 24);
    let started = Instant::now();
    let client: &Client = &server;
    let created = each(client, count, move |c, i| {
        let body = json!({ "name": format!("s{i:05}"), "plan": "bench-noop@1", "cron": cron });
        c.post("/v1/schedules", &[], &body).0
    });
    assert!(created.iter().all(|s| *s == 201), "every create is a 201");
    let creating = started.elapsed();
    let left = due - now_ms();
    assert!(
        left > 1_000,
        "creating {count} schedules took {creating:?}, past the due time: raise MEDIC_SCHED_LEAD"
    );
    eprintln!("created {count} schedules in {creating:.1?}; due in {left} ms");

    std::thread::sleep(Duration::from_millis((left - 1_000) as u64));
    let cpu0 = cpu_seconds(pid);
    let wall0 = Instant::now();
    // Every schedule has fired when each lists a last run.
    let fired_all = loop {
        std::thread::sleep(Duration::from_millis(250));
        let (status, list) = server.get_json("/v1/schedules");
        assert_eq!(status, 200);
        let fired = list["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["last_run"].is_null())
            .count();
        if fired == count {
            break Instant::now();
        }
        assert!(
            wall0.elapsed() < Duration::from_secs(300),
            "only {fired} of {count} fired in 5 minutes"
        );
    };
    let cpu = cpu_seconds(pid) - cpu0;
    let wall = fired_all.duration_since(wall0).as_secs_f64();

    let mut late: Vec<i64> = each(client, count, |c, i| {
        let (status, _, body) = c.get(&format!("/v1/schedules/s{i:05}"));
        assert_eq!(status, 200, "{body}");
        let fire: &Value = &body["history"][0];
        assert_eq!(fire["outcome"], "fired", "{body}");
        fire["recorded_at"].as_i64().unwrap() - fire["due_at"].as_i64().unwrap()
    });
    late.sort_unstable();
    let runs = server.runs().len();
    println!(
        "{count} schedules due at the same second: fire latency p50 {} ms, p99 {} ms, max {} ms; \
         all fired {:.2} s after due-1s; server CPU {:.2} s over {:.2} s wall ({:.0}% of one core; includes driving the runs); \
         created in {:.1} s ({:.0}/s); runs listed (first page) {runs}",
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late[late.len() - 1],
        wall,
        cpu,
        wall,
        100.0 * cpu / wall,
        creating.as_secs_f64(),
        count as f64 / creating.as_secs_f64(),
    );
}
