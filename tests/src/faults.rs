//! Sick hosts and targets for the fault tests (issue 8): a full disk under medic's
//! database (a small tmpfs mounted over its data dir), another process holding the
//! database locked, a target that accepts and never answers (then heals), and a
//! target behind a relay that adds latency.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A tmpfs of `size` mounted over `dir` (which must exist and be empty), unmounted on
/// drop. Needs root, as this machine's sessions and CI have.
pub struct SmallDisk {
    dir: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &Path, size: &str) -> SmallDisk {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs over {} failed (the disk-full test needs root and \
             tmpfs): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
            filler: dir.join("filler"),
        }
    }

    /// Writes a file until the disk refuses another byte; returns its size.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::File::create(&self.filler).expect("create the filler");
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        // Byte by byte for the last partial chunk.
        while let Ok(1) = f.write(&[0u8]) {
            written += 1;
        }
        let _ = f.sync_all();
        written
    }

    /// Frees the space again.
    pub fn clear(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: whatever still holds a file there lets go when it ends.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A TCP target that accepts connections and, while hanging, never answers; once
/// healed, it answers every request with `HTTP/1.1 200`.
pub struct HangingTarget {
    pub address: String,
    hanging: Arc<AtomicBool>,
}

impl HangingTarget {
    pub fn start() -> HangingTarget {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hanging target");
        let address = listener.local_addr().expect("address").to_string();
        let hanging = Arc::new(AtomicBool::new(true));
        let flag = hanging.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    // Read the request, then hold the connection open without a word
                    // while hanging.
                    let _ = conn.read(&mut buf);
                    while flag.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    );
                });
            }
        });
        HangingTarget { address, hanging }
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.address)
    }

    pub fn heal(&self) {
        self.hanging.store(false, Ordering::SeqCst);
    }
}

/// A relay to `upstream` that holds every chunk, both ways, for `delay`: a slow
/// network path to a target.
pub struct SlowRelay {
    pub address: String,
}

impl SlowRelay {
    pub fn start(upstream: &str, delay: Duration) -> SlowRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let address = listener.local_addr().expect("address").to_string();
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                std::thread::spawn(move || pump(client, server, delay));
                std::thread::spawn(move || pump(s2, c2, delay));
            }
        });
        SlowRelay { address }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                std::thread::sleep(delay);
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Another process's view of medic's database: holds an exclusive write lock until
/// dropped, as a backup tool or a curious `sqlite3` session might.
pub struct DatabaseLock {
    conn: rusqlite::Connection,
}

impl DatabaseLock {
    pub fn take(path: &Path) -> DatabaseLock {
        let conn = rusqlite::Connection::open(path).expect("open medic's database");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("take the exclusive lock");
        DatabaseLock { conn }
    }

    pub fn release(self) {
        self.conn
            .execute_batch("ROLLBACK")
            .expect("release the lock");
    }
}
