//! The chaos harness by hand (RELIABILITY.md):
//!
//! ```text
//! make build
//! cargo run --release -p medic-tests --bin medic-chaos -- --rounds 1000 [--seed N]
//! ```
//!
//! Runs from the `tests/` directory (as cargo runs tests) so the built binary and
//! plugins are found; prints the seed first, then the figures, and exits 1 on any
//! violation.

use std::time::{SystemTime, UNIX_EPOCH};

use medic_tests::chaos;

fn main() {
    let mut rounds = 1000;
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut runs_per_round = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match a.as_str() {
            "--rounds" => rounds = value("--rounds") as usize,
            "--seed" => seed = value("--seed"),
            "--runs-per-round" => runs_per_round = Some(value("--runs-per-round") as usize),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    // The harness finds the repository (plugins/dist) from the tests crate's dir.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("cd into the tests crate");
    println!("medic-chaos: seed {seed}, {rounds} rounds");
    let mut cfg = chaos::Config::new(rounds, seed);
    if let Some(n) = runs_per_round {
        cfg.runs_per_round = n;
    }
    let report = chaos::run(&cfg);
    print!("{}", report.summary());
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("medic-chaos: {problem}");
    }
    eprintln!("usage: medic-chaos [--rounds N] [--seed N] [--runs-per-round N]");
    std::process::exit(2);
}
