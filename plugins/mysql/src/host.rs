//! The plugin's only door to the host's imports (`sql.query`, `secret`, artifacts,
//! `progress`): a thin private wrapper, so the SDK's typed `sql` helper can replace it
//! later without touching the actions. Outside a wasm guest (the x86 unit tests) every
//! call fails, saying so.

use crate::value::{Rows, SqlError, Val};

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use medic_sdk::guest::bindings::medic::plugin::{host, sql};

    fn to_wit(v: &Val) -> sql::Value {
        match v {
            Val::Null => sql::Value::Null,
            Val::Int(i) => sql::Value::Int(*i),
            Val::UInt(u) => sql::Value::Uint(*u),
            Val::Float(f) => sql::Value::Float(*f),
            Val::Text(s) => sql::Value::Text(s.clone()),
            Val::Bytes(b) => sql::Value::Bytes(b.clone()),
        }
    }

    fn from_wit(v: sql::Value) -> Val {
        match v {
            sql::Value::Null => Val::Null,
            sql::Value::Int(i) => Val::Int(i),
            sql::Value::Uint(u) => Val::UInt(u),
            sql::Value::Float(f) => Val::Float(f),
            sql::Value::Text(s) => Val::Text(s),
            sql::Value::Bytes(b) => Val::Bytes(b),
        }
    }

    pub fn query(connection: &str, statement: &str, params: &[Val]) -> Result<Rows, SqlError> {
        let params: Vec<sql::Value> = params.iter().map(to_wit).collect();
        match sql::query(connection, statement, &params) {
            Ok(rs) => Ok(Rows {
                columns: rs.columns,
                rows: rs
                    .rows
                    .into_iter()
                    .map(|r| r.into_iter().map(from_wit).collect())
                    .collect(),
                affected_rows: rs.affected_rows,
            }),
            Err(e) => Err(SqlError {
                message: e.message,
                code: e.code,
                retryable: e.retryable,
            }),
        }
    }

    pub fn secret(name: &str) -> Result<String, String> {
        host::secret(name)
    }

    pub fn artifact_append(name: &str, data: &[u8]) -> Result<u64, String> {
        host::artifact_append(name, data)
    }

    pub fn artifact_read(name: &str, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        host::artifact_read(name, offset, len)
    }

    pub fn progress(done: u64, total: u64, message: &str) {
        host::progress(done, total, message)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;

    const NATIVE: &str = "the host's imports exist only inside the wasm guest";

    pub fn query(connection: &str, statement: &str, params: &[Val]) -> Result<Rows, SqlError> {
        #[cfg(test)]
        if let Some(answer) = fake::query(connection, statement, params) {
            return answer;
        }
        let _ = (connection, statement, params);
        Err(SqlError {
            message: NATIVE.into(),
            code: None,
            retryable: false,
        })
    }

    pub fn secret(name: &str) -> Result<String, String> {
        #[cfg(test)]
        if let Some(value) = fake::secret(name) {
            return Ok(value);
        }
        let _ = name;
        Err(NATIVE.into())
    }

    pub fn artifact_append(name: &str, data: &[u8]) -> Result<u64, String> {
        #[cfg(test)]
        if fake::installed() {
            return Ok(fake::append(name, data));
        }
        let _ = (name, data);
        Err(NATIVE.into())
    }

    pub fn artifact_read(name: &str, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        #[cfg(test)]
        if fake::installed() {
            return fake::read(name, offset, len);
        }
        let _ = (name, offset, len);
        Err(NATIVE.into())
    }

    pub fn progress(_: u64, _: u64, _: &str) {}
}

/// A scripted stand-in for the host in unit tests of the actions' logic (statement
/// order, observe, messages). It proves nothing about real servers: the black-box
/// tests on a real MariaDB pair do that.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub mod fake {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    type Responder = Box<dyn FnMut(&str, &str, &[Val]) -> Result<Rows, SqlError>>;

    #[derive(Default)]
    struct Fake {
        responder: Option<Responder>,
        secrets: BTreeMap<String, String>,
        artifacts: BTreeMap<String, Vec<u8>>,
        /// Every (connection, statement) in order.
        log: Vec<(String, String)>,
    }

    thread_local! {
        static FAKE: RefCell<Option<Fake>> = const { RefCell::new(None) };
    }

    /// Installs `responder` as every server, for this test's thread.
    pub fn install(responder: impl FnMut(&str, &str, &[Val]) -> Result<Rows, SqlError> + 'static) {
        FAKE.with(|f| {
            *f.borrow_mut() = Some(Fake {
                responder: Some(Box::new(responder)),
                ..Fake::default()
            })
        });
    }

    pub fn set_secret(name: &str, value: &str) {
        FAKE.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                f.secrets.insert(name.into(), value.into());
            }
        });
    }

    /// The statements run so far, each as `connection: statement`.
    pub fn log() -> Vec<String> {
        FAKE.with(|f| {
            f.borrow()
                .as_ref()
                .map(|f| f.log.iter().map(|(c, s)| format!("{c}: {s}")).collect())
                .unwrap_or_default()
        })
    }

    pub fn artifact(name: &str) -> Option<Vec<u8>> {
        FAKE.with(|f| f.borrow().as_ref()?.artifacts.get(name).cloned())
    }

    pub(super) fn installed() -> bool {
        FAKE.with(|f| f.borrow().is_some())
    }

    pub(super) fn query(c: &str, s: &str, p: &[Val]) -> Option<Result<Rows, SqlError>> {
        // Take the responder out while it runs, so it may look at the fake itself.
        let mut responder = FAKE.with(|f| {
            let mut f = f.borrow_mut();
            let f = f.as_mut()?;
            f.log.push((c.into(), s.into()));
            f.responder.take()
        })?;
        let answer = responder(c, s, p);
        FAKE.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                f.responder = Some(responder);
            }
        });
        Some(answer)
    }

    pub(super) fn secret(name: &str) -> Option<String> {
        FAKE.with(|f| f.borrow().as_ref()?.secrets.get(name).cloned())
    }

    /// Appends like the host, except that it cannot tell calls apart: tests start a
    /// fresh fake per call that writes an artifact.
    pub(super) fn append(name: &str, data: &[u8]) -> u64 {
        FAKE.with(|f| {
            let mut f = f.borrow_mut();
            let a = f
                .as_mut()
                .expect("installed")
                .artifacts
                .entry(name.into())
                .or_default();
            a.extend_from_slice(data);
            a.len() as u64
        })
    }

    pub(super) fn read(name: &str, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        FAKE.with(|f| {
            let f = f.borrow();
            let a = f
                .as_ref()
                .and_then(|f| f.artifacts.get(name))
                .ok_or_else(|| format!("no artifact `{name}` in this run"))?;
            let start = (offset as usize).min(a.len());
            let end = (start + len as usize).min(a.len());
            Ok(a[start..end].to_vec())
        })
    }

    pub fn put_artifact(name: &str, data: &[u8]) {
        FAKE.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                f.artifacts.insert(name.into(), data.to_vec());
            }
        });
    }

    /// Carries artifacts over to a new responder (a later step of the same run).
    pub fn reinstall(
        responder: impl FnMut(&str, &str, &[Val]) -> Result<Rows, SqlError> + 'static,
    ) {
        let artifacts = FAKE.with(|f| {
            f.borrow_mut()
                .take()
                .map(|f| f.artifacts)
                .unwrap_or_default()
        });
        install(responder);
        FAKE.with(|f| {
            if let Some(f) = f.borrow_mut().as_mut() {
                f.artifacts = artifacts;
            }
        });
    }
}

pub use imp::{artifact_append, artifact_read, progress, query, secret};
