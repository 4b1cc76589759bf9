//! The plugin host alone: loading probe.wasm cold (compile) and from the on-disk
//! compiled-component cache, and the per-call overhead (a fresh instance, the `noop`
//! action, drop) with the pooling allocator and with on-demand allocation. Prints
//! figures; asserts nothing. Run: `make bench` (or `cargo bench -p medic --bench
//! plugin` after `make plugins`). `MEDIC_BENCH_CALLS` sets the calls per round.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medic::plugin::{Allocator, Call, CallContext, Host, HostConfig, Invoker, Source};
use serde_json::json;

const ROUNDS: usize = 3;
const LOADS: usize = 5;
/// Concurrent callers in the parallel phase (on the runtime's worker threads).
const PARALLEL: usize = 16;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

fn host(dist: &Path, cache: Option<PathBuf>, allocator: Allocator) -> Host {
    let mut config = HostConfig::new(vec![dist.to_path_buf()], Duration::from_secs(30));
    config.cache_dir = cache;
    config.allocator = allocator;
    Host::new(config).expect("host")
}

/// One load of probe in a new host (as a new process would): read, compile or
/// deserialize, link, and the `manifest()` call.
async fn load(dist: &Path, cache: Option<PathBuf>, want: Source) -> Duration {
    let h = host(dist, cache, Allocator::Pooling);
    let start = Instant::now();
    let inspected = h.inspect("probe").await.expect("probe loads");
    let took = start.elapsed();
    assert_eq!(
        inspected.source, want,
        "the load was not what this figure measures"
    );
    took
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
    let calls: usize = std::env::var("MEDIC_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);

    let mut cold = Vec::new();
    let mut hit = Vec::new();
    for _ in 0..LOADS {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("plugin-cache");
        cold.push(load(&dist, Some(cache.clone()), Source::CompiledAndCached).await);
        hit.push(load(&dist, Some(cache), Source::Cached).await);
    }
    let uncached: Vec<Duration> = {
        let mut v = Vec::new();
        for _ in 0..LOADS {
            v.push(load(&dist, None, Source::Compiled).await);
        }
        v
    };
    println!(
        "load: probe.wasm ({} KiB), {LOADS} loads each, new host each: cold compile median {} (min {}), \
         compile + write to the cache median {}, cache hit median {} (min {}) = {:.0}x faster",
        std::fs::metadata(dist.join("probe.wasm"))
            .map(|m| m.len() / 1024)
            .unwrap_or(0),
        ms(median(&uncached)),
        ms(*uncached.iter().min().unwrap()),
        ms(median(&cold)),
        ms(median(&hit)),
        ms(*hit.iter().min().unwrap()),
        median(&uncached).as_secs_f64() / median(&hit).as_secs_f64()
    );

    let mut summary = Vec::new();
    let mut parallel = Vec::new();
    for allocator in [Allocator::Pooling, Allocator::OnDemand] {
        let h = Arc::new(host(&dist, None, allocator));
        assert_eq!(h.allocator(), allocator, "the pool was refused by the OS");
        h.inspect("probe").await.expect("probe loads");
        // Warm-up: the pool's slots and the allocator's caches.
        call_times(&h, 1000).await;
        let mut medians = Vec::new();
        for round in 1..=ROUNDS {
            let t = call_times(&h, calls).await;
            let (med, p99) = (median(&t), pct(&t, 99.0));
            println!(
                "calls ({allocator:?}): round {round}: {calls} probe/noop calls, fresh instance each: median {}, p99 {}",
                us(med),
                us(p99)
            );
            medians.push((med, p99));
        }
        medians.sort();
        summary.push((allocator, medians[ROUNDS / 2]));

        let mut rates = Vec::new();
        for round in 1..=ROUNDS {
            let cpu = cpu_time();
            let start = Instant::now();
            let tasks: Vec<_> = (0..PARALLEL)
                .map(|_| {
                    let h = h.clone();
                    tokio::spawn(async move { call_times(&h, calls / PARALLEL).await })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.expect("caller task"));
            }
            let wall = start.elapsed();
            let cpu = cpu_time() - cpu;
            let rate = all.len() as f64 / wall.as_secs_f64();
            println!(
                "parallel ({allocator:?}): round {round}: {PARALLEL} callers, {} calls: {rate:.0} calls/s, \
                 latency median {}, p99 {}, CPU {} per call",
                all.len(),
                us(median(&all)),
                us(pct(&all, 99.0)),
                us(cpu / all.len() as u32)
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        parallel.push((allocator, rates[ROUNDS / 2]));
    }
    if let [(_, pool), (_, on_demand)] = parallel[..] {
        println!(
            "summary: {PARALLEL} parallel callers: pooling {pool:.0} calls/s, on-demand {on_demand:.0} calls/s = {:.2}x",
            pool / on_demand
        );
    }
    for (allocator, (med, p99)) in &summary {
        println!(
            "summary: per-call overhead ({allocator:?}), median round: median {}, p99 {}{}",
            us(*med),
            us(*p99),
            if *allocator == Allocator::Pooling {
                " (target: median < 30 us)"
            } else {
                ""
            }
        );
    }
    if let [(_, (pool, _)), (_, (on_demand, _))] = summary[..] {
        println!(
            "summary: pooling / on-demand median = {:.2}",
            pool.as_secs_f64() / on_demand.as_secs_f64()
        );
    }
}

/// Sequential `noop` calls: each instantiates probe in a fresh store, calls
/// `invoke` and drops the instance.
async fn call_times(host: &Host, n: usize) -> Vec<Duration> {
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
            build: None,
            progress: None,
        };
        let start = Instant::now();
        host.invoke(call).await.expect("noop call");
        out.push(start.elapsed());
    }
    out
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
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let total = ticks(11) + ticks(12);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(total * 10)
}
