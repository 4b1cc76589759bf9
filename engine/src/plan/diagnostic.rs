//! Rendering of diagnostics and the map from JSON pointers to display paths and
//! source positions that every check uses to say where a problem is.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use super::{Diagnostic, Diagnostics};

impl fmt::Display for Diagnostic {
    /// `file:line:col: path: message`; parts that are unknown or empty are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

/// 1-based line and column.
pub(crate) type Pos = (usize, usize);

/// Where each node of a parsed document starts, keyed by JSON pointer (`/steps/0/id`).
/// `keys` holds the position of an object member's key, used for problems with the
/// key itself (unknown or duplicate field).
#[derive(Debug, Default, Clone)]
pub(crate) struct Locations {
    pub values: HashMap<String, Pos>,
    pub keys: HashMap<String, Pos>,
}

/// Escapes one JSON pointer segment (RFC 6901).
pub(crate) fn esc(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unesc(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Collects diagnostics for one document, resolving pointers to positions and paths.
pub(crate) struct Report<'a> {
    pub file: &'a str,
    pub doc: &'a Value,
    pub locs: &'a Locations,
    pub out: Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(file: &'a str, doc: &'a Value, locs: &'a Locations) -> Self {
        Report {
            file,
            doc,
            locs,
            out: Vec::new(),
        }
    }

    /// A problem with the value at `pointer`.
    pub fn at(&mut self, pointer: &str, message: impl Into<String>) {
        let pos = self.position(pointer, false);
        self.push(pointer, pos, message.into());
    }

    /// A problem with the key of the member at `pointer` (falls back to its value).
    pub fn at_key(&mut self, pointer: &str, message: impl Into<String>) {
        let pos = self.position(pointer, true);
        self.push(pointer, pos, message.into());
    }

    /// `line N` (with the file when known) of the node at `pointer`, for messages
    /// that name a second place.
    pub fn position(&self, pointer: &str, key: bool) -> Option<Pos> {
        let own = if key {
            self.locs.keys.get(pointer)
        } else {
            None
        };
        if let Some(p) = own.or_else(|| self.locs.values.get(pointer)) {
            return Some(*p);
        }
        // A node that does not exist (a missing field): point at its parent.
        let mut p = pointer;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if let Some(pos) = self.locs.values.get(parent) {
                return Some(*pos);
            }
            p = parent;
        }
        None
    }

    fn push(&mut self, pointer: &str, pos: Option<Pos>, message: String) {
        self.out.push(Diagnostic {
            file: self.file.to_string(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            path: display_path(self.doc, pointer),
            message,
        });
    }

    /// Diagnostics in document order; those without a position last.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        self.out
            .sort_by_key(|d| (d.line.unwrap_or(usize::MAX), d.column.unwrap_or(0)));
        self.out
    }
}

/// `steps[2].with.server` for `/steps/2/with/server`. Whether a segment is an index
/// is decided by the document (a numeric key of an object stays a key).
pub(crate) fn display_path(doc: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut cur = Some(doc);
    for raw in pointer.split('/').skip(1) {
        let seg = unesc(raw);
        match cur {
            Some(Value::Array(items)) => {
                out.push_str(&format!("[{seg}]"));
                cur = seg.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                let plain = !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(&seg);
                } else {
                    out.push_str(&format!("[{}]", Value::String(seg.clone())));
                }
                cur = match other {
                    Some(Value::Object(m)) => m.get(&seg),
                    _ => None,
                };
            }
        }
    }
    out
}

/// A short description of a value for messages: `string "abc"`, `number 3`, `an object`.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let mut shown: String = s.chars().take(60).collect();
            if shown.len() < s.len() {
                shown.push_str("...");
            }
            format!("string {}", Value::String(shown))
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `a, b, c`, or the first `limit` followed by how many more.
pub(crate) fn list(items: &[String], limit: usize) -> String {
    let mut out = items
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > limit {
        out.push_str(&format!(", ... ({} more)", items.len() - limit));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_leaves_out_unknown_parts() {
        let mut d = Diagnostic {
            file: "plans/x.yaml".into(),
            line: Some(14),
            column: Some(13),
            path: "steps[2].needs[0]".into(),
            message: "unknown step `bakup`".into(),
        };
        assert_eq!(
            d.to_string(),
            "plans/x.yaml:14:13: steps[2].needs[0]: unknown step `bakup`"
        );
        d.line = None;
        d.column = None;
        d.path = String::new();
        assert_eq!(d.to_string(), "plans/x.yaml: unknown step `bakup`");
        let two = Diagnostics(vec![d.clone(), d]);
        assert_eq!(
            two.to_string(),
            "plans/x.yaml: unknown step `bakup`\nplans/x.yaml: unknown step `bakup`"
        );
    }

    #[test]
    fn paths_follow_the_document() {
        let doc = json!({"steps": [{"with": {"1": {"a b": 0}}}]});
        assert_eq!(
            display_path(&doc, "/steps/0/with/1/a b"),
            r#"steps[0].with.1["a b"]"#
        );
        assert_eq!(display_path(&doc, ""), "");
        assert_eq!(display_path(&doc, "/steps/0/missing"), "steps[0].missing");
    }
}
