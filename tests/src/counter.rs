//! The counter target the probe plugin's `counter-add`/`counter-sub` talk to: a std
//! TCP server on 127.0.0.1 speaking the line protocol of `plugins/probe/src/counter.rs`
//! (`ADD <counter> <amount> <key>` → `OK <value>`, `HAS <key>` → `YES`/`NO`,
//! `GET <counter>` → `VALUE <n>`). `ADD` applies unconditionally, like a real
//! non-idempotent system would, and every applied `ADD` is logged in order, so a test
//! can see from outside medic whether an effect landed twice or undos ran out of order.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One applied `ADD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Position in the target's log, from 0.
    pub seq: usize,
    /// The idempotency key medic handed the plugin.
    pub key: String,
    pub counter: String,
    pub amount: i64,
    /// The counter's value right after this `ADD`.
    pub value: i64,
}

#[derive(Default)]
struct State {
    values: HashMap<String, i64>,
    applied: Vec<Applied>,
    /// Every request line received, in order (`HAS` lines show that medic observed).
    requests: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every request, so tests can wait for an effect without polling.
    changed: Condvar,
    stop: AtomicBool,
}

/// A running counter target; stops accepting connections when dropped.
pub struct CounterTarget {
    address: SocketAddr,
    shared: Arc<Shared>,
}

impl CounterTarget {
    pub fn start() -> CounterTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the counter target");
        let address = listener.local_addr().expect("counter target address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        CounterTarget { address, shared }
    }

    /// `127.0.0.1:PORT`, as plans take it.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    pub fn value(&self, counter: &str) -> i64 {
        self.state().values.get(counter).copied().unwrap_or(0)
    }

    /// Every applied `ADD`, in the order the target applied them.
    pub fn applied(&self) -> Vec<Applied> {
        self.state().applied.clone()
    }

    /// Every request line received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// How many `ADD`s with this idempotency key were applied.
    pub fn times_applied(&self, key: &str) -> usize {
        self.state().applied.iter().filter(|a| a.key == key).count()
    }

    /// Blocks until `found` picks something out of the applied log, or panics after
    /// `timeout` with the log and `context()`.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut found: impl FnMut(&[Applied]) -> Option<T>,
        context: impl FnOnce() -> String,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if let Some(value) = found(&state.applied) {
                return value;
            }
            let now = Instant::now();
            if now >= deadline {
                let log = describe(&state.applied);
                drop(state);
                panic!(
                    "timed out after {timeout:?} waiting for the counter target to see {what}\n\
                     applied so far:\n{log}\n{}",
                    context()
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .expect("counter target lock")
                .0;
        }
    }

    /// The applied log, one `ADD` per line, for failure messages.
    pub fn describe(&self) -> String {
        describe(&self.state().applied)
    }

    /// Panics unless no idempotency key was applied more than once: the property
    /// medic's durable execution contract exists to protect.
    pub fn assert_each_key_applied_once(&self) {
        let applied = self.applied();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for a in &applied {
            *seen.entry(&a.key).or_default() += 1;
        }
        let twice: Vec<&str> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| *k)
            .collect();
        assert!(
            twice.is_empty(),
            "effects applied more than once (keys {twice:?}):\n{}",
            describe(&applied)
        );
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panicking server thread must not hide the log from the test's message.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for CounterTarget {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and the listener closes.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(200));
    }
}

fn describe(applied: &[Applied]) -> String {
    let mut out = String::new();
    for a in applied {
        let _ = writeln!(
            out,
            "  #{} ADD {} {:+} key={} -> {}",
            a.seq, a.counter, a.amount, a.key, a.value
        );
    }
    if out.is_empty() {
        out.push_str("  (nothing)\n");
    }
    out
}

fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let reply = {
            let mut state = shared
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let reply = answer(&mut state, &line);
            state.requests.push(line);
            reply
        };
        shared.changed.notify_all();
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}

fn answer(state: &mut State, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["ADD", counter, amount, key] => match amount.parse::<i64>() {
            Ok(amount) => {
                let value = state.values.entry(counter.to_string()).or_default();
                *value += amount;
                let value = *value;
                let seq = state.applied.len();
                state.applied.push(Applied {
                    seq,
                    key: key.to_string(),
                    counter: counter.to_string(),
                    amount,
                    value,
                });
                format!("OK {value}")
            }
            Err(_) => format!("ERR amount {amount:?} is not an integer"),
        },
        ["HAS", key] => {
            let has = state.applied.iter().any(|a| a.key == *key);
            (if has { "YES" } else { "NO" }).to_string()
        }
        ["GET", counter] => format!("VALUE {}", state.values.get(*counter).copied().unwrap_or(0)),
        _ => format!("ERR unknown request {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(address: &str, request: &str) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }

    #[test]
    fn speaks_the_probe_protocol_and_logs_every_add() {
        let target = CounterTarget::start();
        let address = target.address();
        assert_eq!(ask(&address, "HAS r/s/1"), "NO");
        assert_eq!(ask(&address, "ADD jobs 5 r/s/1"), "OK 5");
        // Not idempotent: the same key applies again, and the log shows it.
        assert_eq!(ask(&address, "ADD jobs 5 r/s/1"), "OK 10");
        assert_eq!(ask(&address, "ADD jobs -3 r/s/u1"), "OK 7");
        assert_eq!(ask(&address, "HAS r/s/1"), "YES");
        assert_eq!(ask(&address, "GET jobs"), "VALUE 7");
        assert_eq!(ask(&address, "GET other"), "VALUE 0");
        assert!(ask(&address, "ADD jobs x k").starts_with("ERR"));
        assert!(ask(&address, "DROP jobs").starts_with("ERR"));
        assert_eq!(target.value("jobs"), 7);
        assert_eq!(target.times_applied("r/s/1"), 2);
        assert_eq!(
            target
                .applied()
                .iter()
                .map(|a| (a.seq, a.amount, a.value))
                .collect::<Vec<_>>(),
            vec![(0, 5, 5), (1, 5, 10), (2, -3, 7)]
        );
        assert_eq!(target.requests().len(), 9);
        let duplicate = std::panic::catch_unwind(|| target.assert_each_key_applied_once());
        assert!(duplicate.is_err(), "a key applied twice must be reported");
    }

    #[test]
    fn wait_for_wakes_on_an_add() {
        let target = CounterTarget::start();
        let address = target.address();
        let client = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            ask(&address, "ADD a 1 k1")
        });
        let key = target.wait_for(
            Duration::from_secs(5),
            "an ADD",
            |applied| applied.first().map(|a| a.key.clone()),
            String::new,
        );
        assert_eq!(key, "k1");
        assert_eq!(client.join().unwrap(), "OK 1");
    }
}
