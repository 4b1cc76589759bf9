//! TCP from a plugin: `std::net::TcpStream` works in a wasm32-wasip2 guest, but only
//! to the endpoints the plan grants the step (`grants: { connect: [HOST:PORT] }`), and
//! the sandbox has no name lookup: the host resolves the granted names. [`connect`]
//! takes an `ip:port`, or the granted `localhost:PORT` string as written, classifies
//! failures for retry policy, and bounds the connect with a timeout.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::Failure;

/// How long [`connect`] waits when given no timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `address` within `timeout` (default [`DEFAULT_CONNECT_TIMEOUT`]).
///
/// - not granted by the plan: permanent failure (retrying cannot help; grant it);
/// - refused, reset, unreachable, timed out: retryable failure;
/// - not an address: permanent failure.
pub fn connect(address: &str, timeout: Option<Duration>) -> Result<TcpStream, Failure> {
    let timeout = timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let candidates = socket_addrs(address)?;
    let mut last = None;
    for addr in candidates {
        let result = match TcpStream::connect_timeout(&addr, timeout) {
            // Not every WASI build of std can connect with a deadline; the host's
            // wall-clock timeout of the call still bounds it.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => TcpStream::connect(addr),
            other => other,
        }
        .and_then(established);
        match result {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no address to connect to"));
    Err(connect_failure(address, &e))
}

/// `stream` if it is connected. On wasm32-wasip2, std's `connect_timeout` returns
/// `Ok` for a refused connection (it cannot read the socket's pending error), and
/// the refusal only shows at the first read or write as "not connected"; asking for
/// the peer's address tells at once. Plugins that connect with std directly should
/// pass their stream through this too.
pub fn established(stream: TcpStream) -> io::Result<TcpStream> {
    match stream.peer_addr() {
        Ok(_) => Ok(stream),
        Err(e) => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("the connection was not established (refused or unreachable): {e}"),
        )),
    }
}

/// `ip:port`, `[v6]:port`, or `localhost:port` (tried as 127.0.0.1, then ::1). Any
/// other host name cannot be looked up inside the sandbox.
fn socket_addrs(address: &str) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let bad = |why: &str| Failure::permanent(format!("cannot connect to `{address}`: {why}"));
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    Err(bad(
        "a plugin cannot look up host names; pass the IP address the plan grants \
         (e.g. `10.0.0.5:3306`)",
    ))
}

fn connect_failure(address: &str, e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Failure::permanent(format!(
            "connecting to {address} is not allowed: the plan does not grant it; add it to \
             the plugin's `grants: {{ connect: [...] }}` ({e})"
        )),
        io::ErrorKind::InvalidInput => {
            Failure::permanent(format!("cannot connect to `{address}`: {e}"))
        }
        _ => Failure::retryable(format!("connecting to {address} failed: {e}")),
    }
}

/// Sends one request line to `address` and reads one reply line (without its line
/// end): the shape of many admin protocols. I/O errors are retryable.
pub fn exchange_line(
    address: &str,
    request: &str,
    timeout: Option<Duration>,
) -> Result<String, Failure> {
    let mut stream = connect(address, timeout)?;
    let io_failure =
        |e: io::Error| Failure::retryable(format!("talking to {address} ({request:?}): {e}"));
    let _ = stream.set_read_timeout(Some(timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)));
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

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn addresses_are_parsed_and_host_names_refused_with_the_reason() {
        assert_eq!(
            socket_addrs("127.0.0.1:80").unwrap(),
            ["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(socket_addrs("LOCALHOST:5").unwrap().len(), 2);
        let err = socket_addrs("db.example:3306").unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("cannot look up host names"), "{err}");
        assert!(
            socket_addrs("db.example")
                .unwrap_err()
                .message
                .contains("HOST:PORT")
        );
        assert!(
            socket_addrs("h:99999")
                .unwrap_err()
                .message
                .contains("port")
        );
    }

    #[test]
    fn a_refused_connection_is_retryable_and_a_line_exchange_works() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            (&stream)
                .write_all(format!("ECHO {line}").as_bytes())
                .unwrap();
        });
        let reply = exchange_line(&address, "PING", Some(Duration::from_secs(5))).unwrap();
        assert_eq!(reply, "ECHO PING");
        server.join().unwrap();

        // The listener is gone: nothing listens on that port any more.
        let err = connect(&address, Some(Duration::from_secs(5))).unwrap_err();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains(&address), "{err}");
    }
}
