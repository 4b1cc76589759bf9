//! Waiting on something outside the test (a process, a database) without blind
//! sleeps: poll with a short interval until a deadline, then fail with a message.

use std::time::{Duration, Instant};

/// How often conditions outside the test process are re-checked. Short enough that
/// a kill lands well inside a step's deliberate delay (seconds), long enough not to
/// flood the machine with `medic runs show` processes.
const INTERVAL: Duration = Duration::from_millis(40);

/// Calls `check` until it returns `Some`, or panics after `timeout` with `what` and
/// whatever `context` says about the state at that moment.
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(INTERVAL);
    }
}
