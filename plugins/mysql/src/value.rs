//! The values and row sets of the host's `sql` interface, mirrored as plain Rust types
//! so the pure parts of the plugin (parsing, rendering) compile and test on x86, where
//! the guest bindings do not exist.

/// One column value of a row (the WIT `sql.value`).
// Only the guest's host bindings produce some variants.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Val {
    /// The value as text: numbers printed, bytes read as UTF-8 (the host may hand a
    /// text-protocol column back as bytes). `None` for NULL and non-UTF-8 bytes.
    pub fn text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Int(i) => Some(i.to_string()),
            Val::UInt(u) => Some(u.to_string()),
            Val::Float(f) => Some(f.to_string()),
            Val::Text(s) => Some(s.clone()),
            Val::Bytes(b) => String::from_utf8(b.clone()).ok(),
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::UInt(u) => i64::try_from(*u).ok(),
            Val::Float(f) if f.fract() == 0.0 => Some(*f as i64),
            other => other.text()?.trim().parse().ok(),
        }
    }

    /// `Yes`/`ON`/`1`/`true` as true, `No`/`OFF`/`0`/`false` as false.
    pub fn flag(&self) -> Option<bool> {
        match self.text()?.trim().to_ascii_lowercase().as_str() {
            "yes" | "on" | "1" | "true" => Some(true),
            "no" | "off" | "0" | "false" => Some(false),
            _ => None,
        }
    }
}

/// What a statement returned (the WIT `sql.row-set`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Val>>,
    pub affected_rows: u64,
}

impl Rows {
    /// Index of column `name`, compared case-insensitively (servers differ in case).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// Row `row`'s value of the first of `names` the result has.
    pub fn get(&self, row: usize, names: &[&str]) -> Option<&Val> {
        let r = self.rows.get(row)?;
        names
            .iter()
            .find_map(|n| self.column(n).and_then(|i| r.get(i)))
    }

    /// The first row's first value.
    pub fn scalar(&self) -> Option<&Val> {
        self.rows.first()?.first()
    }
}

/// Why a statement failed (the WIT `sql.sql-error`).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    pub message: String,
    pub code: Option<u16>,
    pub retryable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_text_int_and_flag_whatever_the_wire_type() {
        assert_eq!(Val::Bytes(b"42".to_vec()).int(), Some(42));
        assert_eq!(Val::UInt(7).text().as_deref(), Some("7"));
        assert_eq!(Val::Text("Yes".into()).flag(), Some(true));
        assert_eq!(Val::Int(0).flag(), Some(false));
        assert_eq!(Val::Text("Connecting".into()).flag(), None);
        assert_eq!(Val::Null.text(), None);
        assert_eq!(Val::Bytes(vec![0xff]).text(), None);
    }

    #[test]
    fn columns_are_found_case_insensitively_by_any_alias() {
        let rows = Rows {
            columns: vec!["Replica_IO_Running".into()],
            rows: vec![vec![Val::Text("Yes".into())]],
            affected_rows: 0,
        };
        let v = rows.get(0, &["Slave_IO_Running", "replica_io_running"]);
        assert_eq!(v, Some(&Val::Text("Yes".into())));
    }
}
