//! `medic doc PLAN` (a plan as a runbook) and `medic report RUN` (a run as a
//! postmortem, from the local database; over `--server` in `remote`), and the test
//! clock `medic serve --clock-file` (hidden) reads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Env, exit};
use crate::executor::{Clock, SystemClock};
use crate::run::Ms;

/// The system clock moved by the offset (ms, may be negative) written in a file,
/// read at every `now()`: black-box tests jump `medic serve` ahead (an escalation
/// threshold, say) by writing the file. A missing or unreadable file is offset 0.
pub(super) struct FileClock(pub PathBuf);

impl Clock for FileClock {
    fn now(&self) -> Ms {
        let offset = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<Ms>().ok())
            .unwrap_or(0);
        SystemClock.now() + offset
    }
}

pub(super) fn doc(file: &Path) -> Result<u8> {
    match crate::plan::load_file(file, None) {
        Ok(plan) => {
            print!("{}", crate::ops::doc::render(&plan));
            Ok(exit::SUCCEEDED)
        }
        Err(d) => {
            eprintln!("{d}");
            Ok(exit::INVALID)
        }
    }
}

pub(super) async fn report(env: &Env, run: &str, json: bool) -> Result<u8> {
    let store = env.store()?;
    let r = crate::api::build_report(&store, run)
        .await
        .with_context(|| format!("reading run {run}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", crate::ops::report::markdown(&r));
    }
    Ok(exit::SUCCEEDED)
}
