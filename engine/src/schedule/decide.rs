//! The decision: given a schedule, the due times already handled, `now` and whether
//! its previous run is still going, which due times fire now, which are skipped and
//! why, and when to look again.

use serde::Serialize;
use sha2::Digest;

use super::{Missed, OutsideWindow, Overlap, Schedule, local};
use crate::run::Ms;

/// Where the decision starts and what it knows of the world; all instants are epoch ms.
#[derive(Debug, Clone, Copy)]
pub struct Input {
    /// Due times at or before this are handled (fired or skipped) or predate the
    /// schedule (its creation, or its last resume).
    pub after: Ms,
    /// When this scheduler started: a due time whose fire instant is earlier was
    /// missed (nobody was running to fire it) and follows the `missed` policy.
    pub up_since: Ms,
    pub now: Ms,
    /// Whether the run of the schedule's previous fire is still going.
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fire {
    pub due: Ms,
    /// The jittered instant it fires at (moved to a window opening when it waited).
    pub at: Ms,
    /// It fires late, as the one catch-up run after downtime (`missed: run-once`).
    pub missed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// Its fire instant passed while no scheduler ran, and `missed: skip`.
    Missed,
    /// A later due time fires for it: the catch-up of `missed: run-once`, or several
    /// due times that waited for the same window opening.
    Coalesced,
    /// Its fire instant was outside the window, and `outside_window: skip`.
    OutsideWindow,
    /// The previous run was still going, and `overlap: skip`.
    Overlap,
}

impl SkipReason {
    /// As stored in a schedule's history.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Missed => "missed",
            SkipReason::Coalesced => "coalesced",
            SkipReason::OutsideWindow => "outside-window",
            SkipReason::Overlap => "overlap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub due: Ms,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// In due order; the caller records each fire with its run.
    pub fire: Vec<Fire>,
    pub skip: Vec<Skip>,
    /// The new `Input::after`: every due time up to it is in `fire` or `skip`.
    pub after: Ms,
    /// The first due time not handled yet (waiting for its instant, or queued behind
    /// the running previous run).
    pub next_due: Option<Ms>,
    /// When to decide again, unless a run of this schedule ends first. `None`: only a
    /// run's end (queued) or a change to the schedule can make anything fire.
    pub wake_at: Option<Ms>,
}

/// Due times enumerated by one decision at most; past it the decision asks to be
/// called again at once (a minutely schedule down for ten weeks takes two calls).
const LIMIT: usize = 100_000;

/// The deterministic jitter of one due time, within `[0, schedule.jitter]`: sha256 of
/// the schedule's name and the due time, not std's hasher (it may change between Rust
/// releases, and a fire instant must be the same after a restart).
pub fn jitter_of(schedule: &Schedule, due: Ms) -> Ms {
    if schedule.jitter <= 0 {
        return 0;
    }
    let h = sha2::Sha256::digest(format!("{}/{due}", schedule.name).as_bytes());
    let h = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    (h % (schedule.jitter as u64 + 1)) as Ms
}

/// When a due time fires: `Ok((instant, waited_for_window))`, or `Err` when it is
/// outside the window and the schedule skips such due times.
fn fire_instant(s: &Schedule, due: Ms) -> Result<(Ms, bool), ()> {
    let jitter = jitter_of(s, due);
    let at = due + jitter;
    let Some(w) = s.window else {
        return Ok((at, false));
    };
    if w.contains(local::minute_of_day(s.tz, at)) {
        return Ok((at, false));
    }
    match s.outside_window {
        OutsideWindow::Skip => Err(()),
        OutsideWindow::Wait => {
            let opening = local::next_local_minute(s.tz, at, w.start);
            // Keep the jitter so that schedules sharing a window do not all fire at its
            // first instant, unless it would leave the window.
            let jittered = opening + jitter;
            if w.contains(local::minute_of_day(s.tz, jittered)) {
                Ok((jittered, true))
            } else {
                Ok((opening, true))
            }
        }
    }
}

/// The next `n` due times after `after`, each with its fire instant (`None` when it
/// will be skipped as outside the window).
pub fn next_due_times(s: &Schedule, after: Ms, n: usize) -> Vec<(Ms, Option<Ms>)> {
    local::due_after(&s.cron, s.tz, after)
        .take(n)
        .map(|due| (due, fire_instant(s, due).ok().map(|(at, _)| at)))
        .collect()
}

enum Candidate {
    Ready {
        due: Ms,
        at: Ms,
        missed: bool,
        waited: bool,
    },
    OutsideWindow {
        due: Ms,
    },
}

pub fn decide(s: &Schedule, input: Input) -> Decision {
    let mut d = Decision {
        after: input.after,
        ..Decision::default()
    };
    if !s.enabled {
        return d;
    }
    // 1. The due times whose instant has come, in due order; stop at the first that
    //    has not (fires happen in due order, so a later one waits for it).
    let mut ready = Vec::new();
    let mut truncated = false;
    for (i, due) in local::due_after(&s.cron, s.tz, input.after).enumerate() {
        if i == LIMIT {
            truncated = true;
            break;
        }
        match fire_instant(s, due) {
            Ok((at, waited)) if at <= input.now => ready.push(Candidate::Ready {
                due,
                at,
                missed: at < input.up_since,
                waited,
            }),
            Ok((at, _)) => {
                d.next_due = Some(due);
                d.wake_at = Some(at);
                break;
            }
            Err(()) if due <= input.now => ready.push(Candidate::OutsideWindow { due }),
            Err(()) => {
                d.next_due = Some(due);
                d.wake_at = Some(due);
                break;
            }
        }
    }
    if truncated {
        d.wake_at = Some(input.now);
    }

    // 2. Missed and window policies: which candidates remain to fire.
    let last_missed = ready.iter().rev().find_map(|c| match c {
        Candidate::Ready {
            due, missed: true, ..
        } => Some(*due),
        _ => None,
    });
    let mut plan: Vec<Result<Fire, Skip>> = Vec::with_capacity(ready.len());
    for (i, c) in ready.iter().enumerate() {
        let item = match *c {
            Candidate::OutsideWindow { due } => Err(Skip {
                due,
                reason: SkipReason::OutsideWindow,
            }),
            Candidate::Ready {
                due, missed: true, ..
            } if s.missed == Missed::Skip => Err(Skip {
                due,
                reason: SkipReason::Missed,
            }),
            Candidate::Ready {
                due, missed: true, ..
            } if Some(due) != last_missed => Err(Skip {
                due,
                reason: SkipReason::Coalesced,
            }),
            Candidate::Ready {
                due,
                at,
                waited: true,
                missed,
            } => {
                // Several due times that waited for the same opening fire once, as
                // the latest of them.
                let later_same_opening = ready[i + 1..]
                    .iter()
                    .any(|n| matches!(n, Candidate::Ready { at: a, waited: true, .. } if *a == at));
                if later_same_opening {
                    Err(Skip {
                        due,
                        reason: SkipReason::Coalesced,
                    })
                } else {
                    Ok(Fire { due, at, missed })
                }
            }
            Candidate::Ready {
                due,
                at,
                missed,
                waited: false,
            } => Ok(Fire { due, at, missed }),
        };
        plan.push(item);
    }

    // 3. Overlap with the previous run (and with the fires of this very decision).
    let mut busy = input.running;
    for item in plan {
        match item {
            Err(skip) => {
                d.after = skip.due;
                d.skip.push(skip);
            }
            Ok(fire) => match s.overlap {
                Overlap::Allow => {
                    d.after = fire.due;
                    d.fire.push(fire);
                }
                Overlap::Skip if busy => {
                    d.after = fire.due;
                    d.skip.push(Skip {
                        due: fire.due,
                        reason: SkipReason::Overlap,
                    });
                }
                Overlap::Queue if busy => {
                    // It and everything after it wait for the run to end.
                    d.next_due = Some(fire.due);
                    d.wake_at = None;
                    return d;
                }
                Overlap::Skip | Overlap::Queue => {
                    busy = true;
                    d.after = fire.due;
                    d.fire.push(fire);
                }
            },
        }
    }
    d
}
