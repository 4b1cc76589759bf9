//! A stand-in HTTP server that gives every request one canned answer: for what the
//! real `medic serve` cannot be made to say on this branch (e.g. 401 or 403). Or a
//! scripted one (`Stub::scripted`): given statuses first, then another for good, as
//! a webhook receiver that fails before it works.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub struct Stub {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    /// Answers every request with `status` and `body` of `content_type`.
    pub fn start(status: u16, content_type: &str, body: &str) -> Stub {
        Stub::scripted(&[], status, content_type, body)
    }

    /// Answers the first requests with `first` (one status each, in order), every
    /// later one with `then`; the same `body` each time.
    pub fn scripted(first: &[u16], then: u16, content_type: &str, body: &str) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub");
        let url = format!("http://{}", listener.local_addr().expect("stub address"));
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = requests.clone();
        let (content_type, body) = (content_type.to_owned(), body.to_owned());
        let answer = move |status| answer_with(status, &content_type, &body);
        let mut script: std::collections::VecDeque<u16> = first.iter().copied().collect();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let Ok(read) = conn.try_clone() else { continue };
                let mut reader = BufReader::new(read);
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                head.push_str(&String::from_utf8_lossy(&body));
                log.lock().unwrap().push(head);
                let status = script.pop_front().unwrap_or(then);
                let _ = conn.write_all(answer(status).as_bytes());
            }
        });
        Stub { url, requests }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request received (head and body), in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn answer_with(status: u16, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} Stub\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl Stub {
    /// The body of every request received, in order, as JSON (`Null` if it is not).
    pub fn json_bodies(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .map(|r| {
                r.split_once("\r\n\r\n")
                    .and_then(|(_, body)| serde_json::from_str(body).ok())
                    .unwrap_or(serde_json::Value::Null)
            })
            .collect()
    }
}
