//! What a component asks for, read from the interfaces it imports: an operator
//! installing a plugin sees that it wants TCP, HTTP or SQL before any plan grants it.

/// One imported interface and the capability it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The capability in a word (`TCP`, `HTTP`, `SQL`, ...).
    pub kind: &'static str,
    /// The imported interface, as named in the component (`wasi:sockets/tcp@0.2.6`).
    pub interface: String,
}

/// The capability an imported interface stands for; `None` for the plumbing every
/// wasm32-wasip2 build imports (streams, errors, clocks, random, stdio, exit).
pub(super) fn of(interface: &str) -> Option<&'static str> {
    let name = interface.split('@').next().unwrap_or(interface);
    Some(match name {
        "wasi:sockets/tcp" | "wasi:sockets/tcp-create-socket" => "TCP",
        "wasi:sockets/udp" | "wasi:sockets/udp-create-socket" => "UDP",
        "wasi:sockets/ip-name-lookup" => "DNS",
        "wasi:sockets/network" | "wasi:sockets/instance-network" => "network",
        "wasi:http/outgoing-handler" => "HTTP",
        "medic:plugin/sql" => "SQL",
        "medic:plugin/secrets" => "secrets",
        "medic:plugin/host" => "log",
        "medic:plugin/types" => return None,
        "wasi:cli/environment" => "environment",
        n if n.starts_with("wasi:filesystem/") => "filesystem",
        n if n.starts_with("wasi:http/") => "HTTP",
        n if n.starts_with("medic:") => "medic host",
        n if n.starts_with("wasi:io/")
            || n.starts_with("wasi:clocks/")
            || n.starts_with("wasi:random/")
            || n.starts_with("wasi:cli/") =>
        {
            return None;
        }
        _ => "other",
    })
}

/// The capabilities of a component's imports, in import order, plumbing left out.
pub(super) fn from_imports<'a>(imports: impl Iterator<Item = &'a str>) -> Vec<Capability> {
    imports
        .filter_map(|i| {
            of(i).map(|kind| Capability {
                kind,
                interface: i.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_map_to_capabilities_and_plumbing_is_left_out() {
        let caps = from_imports(
            [
                "wasi:io/streams@0.2.6",
                "wasi:sockets/tcp@0.2.6",
                "wasi:http/outgoing-handler@0.2.6",
                "medic:plugin/sql@0.1.0",
                "wasi:clocks/monotonic-clock@0.2.6",
                "acme:x/y",
            ]
            .into_iter(),
        );
        let kinds: Vec<_> = caps.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, ["TCP", "HTTP", "SQL", "other"]);
        assert_eq!(caps[0].interface, "wasi:sockets/tcp@0.2.6");
    }
}
