//! Which medic process owns which runs. Each process is a node with an id and holds
//! an exclusive lock on `<data-dir>/nodes/<id>.lock` for as long as it lives; the OS
//! drops the lock when the process dies (even by SIGKILL), so another process can
//! tell a dead owner from a live one without waiting for a lease to run out.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("creating the node lock {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("checking whether medic node {id} is alive ({path}): {source}")]
    Check {
        id: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct Node {
    id: String,
    dir: PathBuf,
    // Held, never read: the lock lives as long as this file handle.
    _lock: File,
}

impl Node {
    /// Registers this process as a new node under `data_dir`.
    pub fn register(data_dir: &Path) -> Result<Node, NodeError> {
        let dir = data_dir.join("nodes");
        let id = format!("n{}-{:08x}", std::process::id(), rand::random::<u32>());
        let path = dir.join(format!("{id}.lock"));
        let err = |source| NodeError::Create {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let lock = File::create(&path).map_err(err)?;
        lock.lock().map_err(err)?;
        Ok(Node {
            id,
            dir,
            _lock: lock,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the node `id` is a live process (holds its lock).
    pub fn is_alive(&self, id: &str) -> Result<bool, NodeError> {
        if id == self.id {
            return Ok(true);
        }
        let path = self.dir.join(format!("{id}.lock"));
        let file = match File::open(&path) {
            Ok(f) => f,
            // No lock file: the node is gone (or was never here).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(NodeError::Check {
                    id: id.into(),
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        match file.try_lock() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(source)) => Err(NodeError::Check {
                id: id.into(),
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Removes the lock file of a dead node whose runs were taken over.
    pub fn forget(&self, id: &str) {
        if id != self.id {
            let _ = std::fs::remove_file(self.dir.join(format!("{id}.lock")));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(format!("{}.lock", self.id)));
    }
}
