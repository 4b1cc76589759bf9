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

    pub fn query(_: &str, _: &str, _: &[Val]) -> Result<Rows, SqlError> {
        Err(SqlError {
            message: NATIVE.into(),
            code: None,
            retryable: false,
        })
    }

    pub fn secret(_: &str) -> Result<String, String> {
        Err(NATIVE.into())
    }

    pub fn artifact_append(_: &str, _: &[u8]) -> Result<u64, String> {
        Err(NATIVE.into())
    }

    pub fn artifact_read(_: &str, _: u64, _: u32) -> Result<Vec<u8>, String> {
        Err(NATIVE.into())
    }

    pub fn progress(_: u64, _: u64, _: &str) {}
}

pub use imp::{artifact_append, artifact_read, progress, query, secret};
