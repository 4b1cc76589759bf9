//! The host's services besides logging: progress reports and the operator's secrets
//! (the WIT `host` interface). Outside a wasm guest (a plugin's native unit tests)
//! progress goes to stderr and there are no secrets.

use crate::Failure;

/// Tells medic how far a long call has come: `done` of `total` units (`total` 0 when
/// unknown) and what it is doing. Cheap: the host keeps the latest report and records
/// at most a few per second, so report as often as is convenient.
pub fn progress(done: u64, total: u64, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::guest::progress(done, total, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[progress {done}/{total}] {message}");
}

/// The value of the operator's secret `name`, if the plan grants it to this plugin
/// (`grants: { secrets: [NAME] }`) and the operator configured it. A refusal is a
/// permanent failure whose message says which of the two is missing. Never log a
/// secret or put it in an output.
pub fn secret(name: &str) -> Result<String, Failure> {
    #[cfg(target_arch = "wasm32")]
    return crate::guest::secret(name).map_err(Failure::permanent);
    #[cfg(not(target_arch = "wasm32"))]
    Err(Failure::permanent(format!(
        "secret `{name}`: {}",
        crate::NO_HOST
    )))
}
