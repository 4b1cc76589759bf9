//! Statements on the operator's MySQL/MariaDB servers through the host's `sql`
//! interface. A plugin names a connection the plan grants it (`grants.sql`); medic
//! knows its address, user, password and TLS settings, so the plugin never does.
//!
//! ```no_run
//! use medic_sdk::sql::{self, Value};
//! use medic_sdk::Failure;
//!
//! fn lag(connection: &str) -> Result<Option<u64>, Failure> {
//!     let status = sql::query(connection, "SHOW SLAVE STATUS", &[])?;
//!     Ok(status
//!         .rows()
//!         .next()
//!         .and_then(|row| row.get("Seconds_Behind_Master")?.as_u64()))
//! }
//!
//! fn grow(connection: &str, id: i64) -> Result<u64, Failure> {
//!     // The statements of one call on one connection share a session.
//!     sql::query(connection, "SET @step = ?", &[Value::from(5)])?;
//!     let done = sql::query(
//!         connection,
//!         "UPDATE counters SET n = n + @step WHERE id = ?",
//!         &[id.into()],
//!     )?;
//!     Ok(done.affected_rows)
//! }
//! ```

use std::fmt;

use crate::Failure;

/// A statement's parameter or a column's value. Decimals, dates and times arrive as
/// text, exactly as the server writes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Uint(u64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// An integer that fits `i64` (also from text such as a decimal without a
    /// fraction).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Uint(u) => i64::try_from(*u).ok(),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// An integer that fits `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Uint(u) => Some(*u),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Any number (decimals arrive as text and are parsed).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Uint(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a binary or a text value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            Value::Text(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// As JSON: numbers, strings, null; bytes as an array of numbers.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(i) => (*i).into(),
            Value::Uint(u) => (*u).into(),
            // NaN and infinities have no JSON form.
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Text(s) => s.clone().into(),
            Value::Bytes(b) => b.clone().into(),
        }
    }

    /// A JSON scalar as a parameter (`true`/`false` become 1/0); `None` for arrays
    /// and objects.
    pub fn from_json(json: &serde_json::Value) -> Option<Value> {
        Some(match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Int(i64::from(*b)),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Value::Int(i),
                (None, Some(u)) => Value::Uint(u),
                _ => Value::Float(n.as_f64()?),
            },
            serde_json::Value::String(s) => Value::Text(s.clone()),
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => return None,
        })
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident as $as:ty),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(<$as>::from(v))
            }
        }
    )*};
}

value_from!(
    i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int as i64,
    u8 => Uint as u64, u16 => Uint as u64, u32 => Uint as u64, u64 => Uint as u64,
    f32 => Float as f64, f64 => Float as f64,
    bool => Int as i64,
    String => Text as String, &str => Text as String,
    Vec<u8> => Bytes as Vec<u8>, &[u8] => Bytes as Vec<u8>,
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// What a statement returned: its columns and rows (empty for statements without a
/// result), and for writes the rows affected and the last generated id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub values: Vec<Vec<Value>>,
    pub affected_rows: u64,
    pub last_insert_id: u64,
}

impl RowSet {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The rows, each readable by column name.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'_>> {
        self.values.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The row at `index`.
    pub fn row(&self, index: usize) -> Option<Row<'_>> {
        self.values.get(index).map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The position of column `name` (the first one, if a name repeats).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// `{"columns": [...], "rows": [{column: value, ...}, ...], "affected_rows": N,
    /// "last_insert_id": N}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "columns": self.columns,
            "rows": self.rows().map(|r| r.to_json()).collect::<Vec<_>>(),
            "affected_rows": self.affected_rows,
            "last_insert_id": self.last_insert_id,
        })
    }
}

/// One row of a [`RowSet`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The value of column `name`; `None` if there is no such column (a SQL NULL is
    /// `Some(Value::Null)`).
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        let index = self.columns.iter().position(|c| c == name)?;
        self.values.get(index)
    }

    /// The values in column order.
    pub fn values(&self) -> &'a [Value] {
        self.values
    }

    /// The row as a JSON object by column name.
    pub fn to_json(&self) -> serde_json::Value {
        let object: serde_json::Map<String, serde_json::Value> = self
            .columns
            .iter()
            .zip(self.values)
            .map(|(c, v)| (c.clone(), v.to_json()))
            .collect();
        serde_json::Value::Object(object)
    }
}

/// Why a statement failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub message: String,
    /// The server's error number (1045 access denied, 1213 deadlock, ...), when it
    /// sent one.
    pub code: Option<u16>,
    /// Whether trying again may help (connection refused or lost, lock wait timeout,
    /// deadlock, server shutting down).
    pub retryable: bool,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlError {}

/// A failed statement fails the action with the same message and retry advice.
impl From<SqlError> for Failure {
    fn from(e: SqlError) -> Failure {
        Failure {
            message: e.message,
            retryable: e.retryable,
        }
    }
}

/// Runs `statement` with its `?` placeholders bound to `params` on the connection
/// named `connection`. All statements of one call on one connection share a session
/// (variables, transactions, locks); it ends with the call.
pub fn query(connection: &str, statement: &str, params: &[Value]) -> Result<RowSet, SqlError> {
    imp::query(connection, statement, params)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{RowSet, SqlError, Value};
    use crate::guest::bindings::medic::plugin::sql as wit;

    pub fn query(connection: &str, statement: &str, params: &[Value]) -> Result<RowSet, SqlError> {
        let params: Vec<wit::Value> = params.iter().cloned().map(to_wit).collect();
        match wit::query(connection, statement, &params) {
            Ok(set) => Ok(RowSet {
                columns: set.columns,
                values: set
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(from_wit).collect())
                    .collect(),
                affected_rows: set.affected_rows,
                last_insert_id: set.last_insert_id,
            }),
            Err(e) => Err(SqlError {
                message: e.message,
                code: e.code,
                retryable: e.retryable,
            }),
        }
    }

    fn to_wit(v: Value) -> wit::Value {
        match v {
            Value::Null => wit::Value::Null,
            Value::Int(i) => wit::Value::Int(i),
            Value::Uint(u) => wit::Value::Uint(u),
            Value::Float(f) => wit::Value::Float(f),
            Value::Text(s) => wit::Value::Text(s),
            Value::Bytes(b) => wit::Value::Bytes(b),
        }
    }

    fn from_wit(v: wit::Value) -> Value {
        match v {
            wit::Value::Null => Value::Null,
            wit::Value::Int(i) => Value::Int(i),
            wit::Value::Uint(u) => Value::Uint(u),
            wit::Value::Float(f) => Value::Float(f),
            wit::Value::Text(s) => Value::Text(s),
            wit::Value::Bytes(b) => Value::Bytes(b),
        }
    }
}

/// Outside a plugin there is no host to ask.
#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{RowSet, SqlError, Value};

    pub fn query(connection: &str, _: &str, _: &[Value]) -> Result<RowSet, SqlError> {
        Err(SqlError {
            message: format!(
                "SQL connection `{connection}`: medic_sdk::sql::query works only inside a \
                 plugin (a wasm32-wasip2 component run by medic)"
            ),
            code: None,
            retryable: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_are_read_by_column_name() {
        let set = RowSet {
            columns: vec!["id".into(), "name".into(), "note".into()],
            values: vec![
                vec![Value::Int(1), "a".into(), Value::Null],
                vec![Value::Uint(2), "b".into(), Value::Bytes(vec![0, 1])],
            ],
            affected_rows: 0,
            last_insert_id: 0,
        };
        assert_eq!(set.len(), 2);
        let names: Vec<&str> = set
            .rows()
            .map(|r| r.get("name").and_then(Value::as_str).unwrap())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(set.row(1).unwrap().get("id").unwrap().as_i64(), Some(2));
        assert_eq!(set.row(0).unwrap().get("note"), Some(&Value::Null));
        assert_eq!(set.row(0).unwrap().get("missing"), None);
        assert_eq!(set.column("note"), Some(2));
        assert_eq!(
            set.to_json()["rows"],
            json!([{"id": 1, "name": "a", "note": null}, {"id": 2, "name": "b", "note": [0, 1]}])
        );
    }

    #[test]
    fn values_convert_from_rust_and_json() {
        assert_eq!(Value::from(5), Value::Int(5));
        assert_eq!(Value::from(5u32), Value::Uint(5));
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::from("x"), Value::Text("x".into()));
        assert_eq!(Value::from_json(&json!(-3)), Some(Value::Int(-3)));
        assert_eq!(
            Value::from_json(&json!(u64::MAX)),
            Some(Value::Uint(u64::MAX))
        );
        assert_eq!(Value::from_json(&json!(1.5)), Some(Value::Float(1.5)));
        assert_eq!(Value::from_json(&json!(true)), Some(Value::Int(1)));
        assert_eq!(Value::from_json(&json!([1])), None);
        assert_eq!(Value::Text("12.50".into()).as_f64(), Some(12.5));
    }

    #[test]
    fn a_sql_error_keeps_its_retry_advice_as_a_failure() {
        let e = SqlError {
            message: "deadlock".into(),
            code: Some(1213),
            retryable: true,
        };
        let f: Failure = e.into();
        assert!(f.retryable);
        assert_eq!(f.message, "deadlock");
    }
}
