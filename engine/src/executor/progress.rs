//! Progress reports of a plugin call in flight, forwarded to the run's driver as
//! events: at most one per `INTERVAL` per call, and the latest one once more when the
//! call ends, before its result, so the last report is never lost or late.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::plugin::ProgressReport;

/// At most two progress events per second per call.
pub(super) const INTERVAL: Duration = Duration::from_millis(500);

/// Awaits `call` while handing its plugin's progress `reports` to `emit` (which must
/// not block: it feeds the driver's unbounded event channel).
pub(super) async fn forwarding<T>(
    call: impl Future<Output = T>,
    mut reports: watch::Receiver<Option<ProgressReport>>,
    mut emit: impl FnMut(ProgressReport),
) -> T {
    tokio::pin!(call);
    let mut last: Option<ProgressReport> = None;
    let mut quiet_until = Instant::now();
    let mut open = true;
    let mut forward = |latest: Option<ProgressReport>, last: &mut Option<ProgressReport>| {
        if let Some(report) = latest
            && last.as_ref() != Some(&report)
        {
            *last = Some(report.clone());
            emit(report);
        }
    };
    loop {
        // The select's futures (and their borrows of `reports`) end with it.
        let changed = tokio::select! {
            biased;
            out = &mut call => {
                let latest = reports.borrow().clone();
                forward(latest, &mut last);
                return out;
            }
            changed = async {
                tokio::time::sleep_until(quiet_until).await;
                reports.changed().await.is_ok()
            }, if open => changed,
        };
        if !changed {
            // Nobody can report any more; the call still has to end.
            open = false;
            continue;
        }
        let latest = reports.borrow_and_update().clone();
        forward(latest, &mut last);
        quiet_until = Instant::now() + INTERVAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::ProgressSink;

    #[tokio::test]
    async fn reports_are_rate_limited_and_the_last_one_is_kept() {
        let (sink, reports) = ProgressSink::new();
        let call = async move {
            // 100 reports over about a second, then the last one.
            for i in 1..=100u64 {
                sink.report(i, 100, format!("item {i}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sink.report(100, 100, "done".into());
            "output"
        };
        let began = std::time::Instant::now();
        let mut seen = Vec::new();
        let out = forwarding(call, reports, |r| seen.push(r)).await;
        let took = began.elapsed();
        assert_eq!(out, "output");
        // One at once, then one per interval, plus the last one at the end.
        let most = 2 + (took.as_millis() / INTERVAL.as_millis()) as usize;
        assert!(
            seen.len() >= 2 && seen.len() <= most,
            "{} reports forwarded in {took:?} (at most {most}): {seen:?}",
            seen.len()
        );
        assert_eq!(seen[0].done, 1, "the first report goes out at once");
        let last = seen.last().unwrap();
        assert_eq!((last.done, last.message.as_str()), (100, "done"));
    }
}
