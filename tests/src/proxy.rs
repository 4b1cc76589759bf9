//! A TCP proxy in front of `medic serve` that records every byte the client sends
//! and breaks one exchange on purpose: what a flaky network does to `medic --server`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The one thing the proxy breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Relay faithfully.
    None,
    /// Forward the first `POST /v1/runs` to the server, then close the client's
    /// connection when the answer starts: the run exists, the client never hears so.
    LoseFirstSubmitAnswer,
    /// On the first event stream, relay the first part that carries an event, then
    /// cut the connection.
    CutFirstEventStream,
}

/// The bytes one client connection sent, shared with the thread relaying them.
type Sent = Arc<Mutex<Vec<u8>>>;

pub struct Proxy {
    url: String,
    /// What clients sent, one entry per connection.
    sent: Arc<Mutex<Vec<Sent>>>,
}

struct Shared {
    upstream: String,
    fault: Fault,
    /// The fault happens once.
    used: AtomicBool,
}

impl Proxy {
    /// Proxies to `upstream` (`http://HOST:PORT`).
    pub fn start(upstream: &str, fault: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let shared = Arc::new(Shared {
            upstream: upstream
                .strip_prefix("http://")
                .expect("an http:// upstream")
                .to_owned(),
            fault,
            used: AtomicBool::new(false),
        });
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let log = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let record = Arc::new(Mutex::new(Vec::new()));
                log.lock().unwrap().push(record.clone());
                let shared = shared.clone();
                std::thread::spawn(move || relay(client, &shared, record));
            }
        });
        Proxy { url, sent }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Everything clients sent, as text, connection after connection.
    pub fn sent(&self) -> String {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|c| String::from_utf8_lossy(&c.lock().unwrap()).into_owned())
            .collect::<Vec<_>>()
            .join("\n--- next connection ---\n")
    }

    /// Values of the header `name` (any case) in every request sent.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.sent()
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
            .collect()
    }

    /// Request lines (`METHOD PATH HTTP/1.1`) in the order sent.
    pub fn requests(&self) -> Vec<String> {
        self.sent()
            .lines()
            .filter(|l| l.ends_with(" HTTP/1.1"))
            .map(str::to_owned)
            .collect()
    }
}

fn relay(client: TcpStream, shared: &Shared, record: Sent) {
    let Ok(server) = TcpStream::connect(&shared.upstream) else {
        return;
    };
    let (mut from_client, mut to_server) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(s)) => (c, s),
        _ => return,
    };
    let up = {
        let record = record.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from_client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to_server.shutdown(Shutdown::Write);
        })
    };
    let (mut from_server, mut to_client) = (server, client);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from_server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let sent = String::from_utf8_lossy(&record.lock().unwrap()).into_owned();
        let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
        let cut = match shared.fault {
            Fault::None => None,
            Fault::LoseFirstSubmitAnswer => (sent.contains("POST /v1/runs HTTP/1.1")).then_some(0),
            Fault::CutFirstEventStream => {
                (sent.contains("/events HTTP/1.1") && chunk.contains("id: ")).then_some(n)
            }
        };
        if let Some(keep) = cut
            && !shared.used.swap(true, Ordering::SeqCst)
        {
            let _ = to_client.write_all(&buf[..keep]);
            let _ = to_client.shutdown(Shutdown::Both);
            let _ = from_server.shutdown(Shutdown::Both);
            break;
        }
        if to_client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = up.join();
}
