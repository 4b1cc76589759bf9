//! TCP plumbing over WASI sockets: connecting with errors classified for retry
//! policy, a one-line request/reply exchange, and a minimal HTTP/1.1 GET.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use medic_sdk::Failure;

/// Connects to `address` (`ip:port`; the sandbox has no name lookup, so a host name
/// fails unless the host resolves it for us some day).
pub fn connect(address: &str, timeout: Option<Duration>) -> Result<TcpStream, Failure> {
    let result = match (address.parse::<SocketAddr>(), timeout) {
        (Ok(addr), Some(t)) => match TcpStream::connect_timeout(&addr, t) {
            // Not every WASI build of std can connect with a deadline; the host's
            // wall-clock timeout still bounds the call.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => TcpStream::connect(addr),
            other => other,
        },
        (Ok(addr), None) => TcpStream::connect(addr),
        (Err(_), _) => TcpStream::connect(address),
    }
    .and_then(medic_sdk::tcp::established);
    result.map_err(|e| connect_failure(address, &e))
}

fn connect_failure(address: &str, e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Failure::permanent(format!(
            "connecting to {address} was denied: grant it to the plugin in the plan's `connect` list ({e})"
        )),
        io::ErrorKind::InvalidInput => {
            Failure::permanent(format!("cannot connect to `{address}`: {e}"))
        }
        _ => Failure::retryable(format!("connecting to {address} failed: {e}")),
    }
}

/// Sends one request line and reads one reply line (without its newline).
pub fn exchange(address: &str, request: &str) -> Result<String, Failure> {
    let mut stream = connect(address, None)?;
    let io_failure =
        |e: io::Error| Failure::retryable(format!("talking to {address} ({request:?}): {e}"));
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(io_failure)?;
    let mut reply = String::new();
    BufReader::new(&mut stream)
        .read_line(&mut reply)
        .map_err(io_failure)?;
    if reply.is_empty() {
        return Err(Failure::retryable(format!(
            "{address} closed the connection without answering {request:?}"
        )));
    }
    Ok(reply.trim_end().to_string())
}

/// GETs `url` (`http://host:port/path`) and returns the status code.
pub fn http_get_status(url: &str) -> Result<u16, Failure> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Failure::permanent(format!("`{url}` is not an http:// URL")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = connect(&address, None)?;
    let io_failure = |e: io::Error| Failure::retryable(format!("GET {url}: {e}"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: medic-probe\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io_failure)?;
    let mut status_line = String::new();
    BufReader::new(&mut stream)
        .read_line(&mut status_line)
        .map_err(io_failure)?;
    // "HTTP/1.1 200 OK"
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| {
            Failure::retryable(format!(
                "GET {url}: not an HTTP status line: {:?}",
                status_line.trim_end()
            ))
        })
}
