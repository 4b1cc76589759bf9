//! Dry runs (`medic run --dry-run`, medic:plugin@0.3.0): what a mutating action would
//! do, from read-only checks of its preconditions on the server. Nothing here writes.
//! A check that cannot be made (the server is unreachable) is a failed check, not an
//! error, so a dry run shows every step.

use medic_sdk::{Context, DryRun, Effect, Failure, Plugin, Value};

use crate::Mysql;
use crate::server::Server;

/// A read-only action runs for real (it has no effect) and reports its output.
pub fn plan(ctx: &Context, action: &str, params: Value) -> Result<DryRun, Failure> {
    let effect = Mysql::manifest()
        .actions
        .iter()
        .find(|a| a.name == action)
        .map(|a| a.effect)
        .ok_or_else(|| Failure::unknown_action(action))?;
    if effect == Effect::ReadOnly {
        let output = Mysql::invoke(ctx, action, params)?;
        return Ok(DryRun::would(format!(
            "read (ran for real, read-only): {output}"
        )));
    }
    let Some(server) = params
        .get("server")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(DryRun::would(format!(
            "run `{action}` (no single server to check)"
        )));
    };
    let s = Server::new(&server);
    let flavor = match s.flavor() {
        Ok(f) => f,
        Err(e) => {
            return Ok(
                DryRun::would(format!("run `{action}` on `{server}`")).check(
                    "connection",
                    false,
                    e.message,
                ),
            );
        }
    };
    let connected = |would: String| {
        DryRun::would(would).check(
            "connection",
            true,
            format!(
                "`{server}` answers ({} {}.{}.{})",
                flavor.name(),
                flavor.version.0,
                flavor.version.1,
                flavor.version.2
            ),
        )
    };
    let flag = |b: bool| if b { "ON" } else { "OFF" };
    Ok(match action {
        "set-read-only" => {
            let want = params
                .get("read_only")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let (ro, sro) = crate::admin::read_only_state(&s)?;
            let sro = sro
                .map(|v| format!(", super_read_only {}", flag(v)))
                .unwrap_or_default();
            if ro == want {
                connected(format!(
                    "nothing: read_only is already {} on `{server}`{sro}",
                    flag(ro)
                ))
            } else {
                connected(format!(
                    "SET GLOBAL read_only = {} on `{server}` (now {}{sro})",
                    flag(want),
                    flag(ro)
                ))
            }
        }
        "stop-replica" | "start-replica" => {
            let start = action == "start-replica";
            let statement = if start {
                flavor.start_replica()
            } else {
                flavor.stop_replica()
            };
            match s.replica_status()? {
                None if start => connected(format!("{statement} on `{server}`")).check(
                    "is a replica",
                    false,
                    format!("`{server}` replicates from no one: {action} would fail; point it first (point-replica)"),
                ),
                None => connected(format!("nothing: `{server}` is not a replica")),
                Some(st) => {
                    let state = format!(
                        "IO thread {}, SQL thread {}, source {}:{}",
                        st.io_state,
                        if st.sql_running { "running" } else { "stopped" },
                        st.source_host,
                        st.source_port
                    );
                    let done = if start { st.io_running() && st.sql_running } else { st.stopped() };
                    let d = if done {
                        connected(format!("nothing: already {} on `{server}` ({state})", if start { "running" } else { "stopped" }))
                    } else {
                        connected(format!("{statement} on `{server}` (now {state})"))
                    };
                    d.check("is a replica", true, state)
                }
            }
        }
        _ => connected(format!(
            "run `{action}` on `{server}` (only the connection was checked)"
        )),
    })
}
