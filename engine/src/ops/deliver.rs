//! The outbox sender of `medic serve`: POSTs each due notification to its channel
//! and records the outcome; a failure (a non-2xx answer, a refused connection, a
//! timeout) is retried with doubling delays up to `[notify] max_attempts`. The
//! outbox is a table, so a notification queued before a crash is sent after it.
//! Delivery is at least once: each attempt first claims its row (a lease), so two
//! medic processes on one database do not send it together, but a process that dies
//! between sending and recording leaves it to be sent again when the lease lapses.

use std::sync::Arc;
use std::time::Duration;

use crate::executor::Executor;
use crate::metrics;
use crate::plugin::Invoker;
use crate::plugin::config::NotifyConfig;
use crate::run::Ms;
use crate::store::NotificationRow;

use super::notice;

/// How long one delivery may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries sent per pass.
const BATCH: usize = 32;

/// Runs until the process ends, on the executor's clock and store.
pub async fn run<I: Invoker>(exec: Executor<I>, config: Arc<NotifyConfig>) {
    let store = exec.store().clone();
    let now = || exec.now();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    loop {
        let due = match store.due_notifications(now(), BATCH).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading the notification outbox failed");
                Vec::new()
            }
        };
        let idle = due.is_empty();
        for n in due {
            // A claim lapses after twice the request timeout, should this process die
            // mid-delivery: then the notification is sent again (at least once).
            let lease = now() + 2 * TIMEOUT.as_millis() as Ms;
            match store.claim_notification(n.id, n.next_at, lease).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "claiming a notification failed");
                    continue;
                }
            }
            let outcome = send(&agent, &config, &n).await;
            let at = now();
            let (error, retry_at) = match outcome {
                Ok(()) => {
                    exec.metrics().ops_event(
                        metrics::NOTIFICATION_DELIVERIES,
                        "outcome",
                        "delivered",
                    );
                    (None, None)
                }
                Err(Failure {
                    error: e,
                    permanent,
                }) => {
                    let attempts = n.attempts + 1;
                    let retry = (!permanent && attempts < config.max_attempts)
                        .then(|| at + backoff(&config, attempts).as_millis() as Ms);
                    let outcome = if retry.is_none() { "given-up" } else { "retry" };
                    exec.metrics()
                        .ops_event(metrics::NOTIFICATION_DELIVERIES, "outcome", outcome);
                    if retry.is_none() {
                        tracing::error!(notification = n.id, run_id = %n.run_id, channel = %n.channel, error = %e,
                            "giving up on a notification after {attempts} attempt(s)");
                    } else {
                        tracing::warn!(notification = n.id, channel = %n.channel, error = %e, "notification not delivered; retrying");
                    }
                    (Some(e), retry)
                }
            };
            if let Err(e) = store
                .notification_attempted(n.id, error, retry_at, at)
                .await
            {
                tracing::error!(error = %e, "recording a notification's delivery failed");
            }
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The delay before attempt `attempts + 1`: `retry_initial` doubled per attempt
/// after the first, at most `retry_max`.
pub fn backoff(config: &NotifyConfig, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    config
        .retry_initial
        .saturating_mul(factor)
        .min(config.retry_max)
}

/// Why a delivery failed, and whether trying again can help: a channel missing from
/// medic.toml or a template that does not render stays so until a restart with
/// another configuration, so it is given up at once.
struct Failure {
    error: String,
    permanent: bool,
}

impl From<String> for Failure {
    fn from(error: String) -> Failure {
        Failure {
            error,
            permanent: false,
        }
    }
}

fn permanent(error: String) -> Failure {
    Failure {
        error,
        permanent: true,
    }
}

async fn send(
    agent: &ureq::Agent,
    config: &NotifyConfig,
    n: &NotificationRow,
) -> Result<(), Failure> {
    let Some(channel) = config.channels.get(&n.channel) else {
        let known: Vec<&str> = config.channels.keys().map(String::as_str).collect();
        return Err(permanent(format!(
            "no channel `{}` in medic.toml [notify.channels] (configured: {}); add [notify.channels.{}]",
            n.channel,
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
            n.channel
        )));
    };
    let payload = notice::payload(channel, &n.body).map_err(permanent)?;
    let (agent, url) = (agent.clone(), channel.url.clone());
    tokio::task::spawn_blocking(move || {
        let resp = agent
            .post(&url)
            .send_json(&payload)
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: answered {status}"))
        }
    })
    .await
    .map_err(|e| format!("the delivery task failed: {e}"))?
    .map_err(Failure::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_initial_delay_up_to_the_max() {
        let c = NotifyConfig {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
            ..NotifyConfig::default()
        };
        let delays: Vec<u64> = (1..=6).map(|a| backoff(&c, a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5, 5]);
        assert_eq!(backoff(&c, u32::MAX), Duration::from_secs(5));
    }
}
