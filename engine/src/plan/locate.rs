//! Reads plan text into a `serde_json::Value` and remembers where each node starts,
//! so later checks can point at `file:line:col`. YAML goes through yaml-rust2's
//! event parser; JSON through serde_json (strict syntax, exact numbers), then the
//! same event parser (JSON is YAML 1.2 flow syntax) only for positions and
//! duplicate keys.

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::Format;
use super::diagnostic::{Locations, Pos, esc};

/// Deeper documents are rejected: every later stage (schema validation, templates,
/// dropping the value) recurses, and no plan needs more.
pub(crate) const MAX_DEPTH: usize = 64;

/// A problem that stops parsing, with its 1-based position where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Option<Pos>,
    pub message: String,
}

/// Parses `text` into a document and the positions of its nodes.
pub(crate) fn locate(text: &str, format: Format) -> Result<(Value, Locations), Vec<SyntaxError>> {
    match format {
        Format::Yaml => {
            let built = build(text)?;
            Ok((built.0.unwrap_or(Value::Null), built.1))
        }
        Format::Json => {
            let value: Value = serde_json::from_str(text).map_err(|e| {
                vec![SyntaxError {
                    pos: (e.line() > 0).then(|| (e.line(), e.column().max(1))),
                    message: format!("invalid JSON: {}", strip_position(&e.to_string())),
                }]
            })?;
            match build(text) {
                Ok((_, locs)) => Ok((value, locs)),
                // Duplicate keys and depth are real errors; anything else the YAML
                // reader dislikes in valid JSON only costs us the positions.
                Err(errs) => {
                    let real: Vec<SyntaxError> = errs
                        .into_iter()
                        .filter(|e| {
                            e.message.starts_with("duplicate key")
                                || e.message.starts_with("nesting deeper")
                        })
                        .collect();
                    if real.is_empty() {
                        Ok((value, Locations::default()))
                    } else {
                        Err(real)
                    }
                }
            }
        }
    }
}

/// serde_json appends ` at line L column C`; we report the position separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn build(text: &str) -> Result<(Option<Value>, Locations), Vec<SyntaxError>> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, true) {
        let m = e.marker();
        b.errors.push(SyntaxError {
            pos: Some((m.line(), m.col() + 1)),
            message: format!("invalid YAML: {}", e.info()),
        });
    }
    if !b.errors.is_empty() {
        b.errors.truncate(20);
        return Err(b.errors);
    }
    Ok((b.root, b.locs))
}

enum Frame {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        key: Option<String>,
    },
}

#[derive(Default)]
struct Builder {
    frames: Vec<Frame>,
    /// Pointer of each open container (parallel to `frames`).
    pointers: Vec<String>,
    root: Option<Value>,
    locs: Locations,
    documents: usize,
    errors: Vec<SyntaxError>,
    /// Set by an error after which the rest of the events cannot be trusted.
    stopped: bool,
}

impl Builder {
    fn fail(&mut self, mark: Marker, message: String) {
        self.errors.push(SyntaxError {
            pos: Some(pos(mark)),
            message,
        });
        self.stopped = true;
    }

    /// The pointer of the node that starts now, or `None` when it is a map key.
    fn next_pointer(&self) -> Option<String> {
        let parent = self.pointers.last().map(String::as_str).unwrap_or("");
        match self.frames.last() {
            None => Some(String::new()),
            Some(Frame::Seq(items)) => Some(format!("{parent}/{}", items.len())),
            Some(Frame::Map { key: Some(k), .. }) => Some(format!("{parent}/{}", esc(k))),
            Some(Frame::Map { key: None, .. }) => None,
        }
    }

    fn finish_node(&mut self, value: Value) {
        match self.frames.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq(items)) => items.push(value),
            Some(Frame::Map { map, key }) => {
                let k = key.take().expect("a value follows its key");
                // A duplicate was reported when its key was read; keep the first.
                map.entry(k).or_insert(value);
            }
        }
    }

    fn key(&mut self, text: String, mark: Marker) {
        let parent = self.pointers.last().cloned().unwrap_or_default();
        let pointer = format!("{parent}/{}", esc(&text));
        // A block mapping's start event comes after its first key was scanned;
        // the key is where the mapping really starts.
        let first_key =
            matches!(self.frames.last(), Some(Frame::Map { map, .. }) if map.is_empty());
        if first_key
            && let Some(start) = self.locs.values.get_mut(&parent)
            && pos(mark) < *start
        {
            *start = pos(mark);
        }
        if let Some(first) = self.locs.keys.get(&pointer).copied() {
            self.errors.push(SyntaxError {
                pos: Some(pos(mark)),
                message: format!(
                    "duplicate key `{text}` (first at line {} column {}); keep only one",
                    first.0, first.1
                ),
            });
        } else {
            self.locs.keys.insert(pointer, pos(mark));
        }
        if let Some(Frame::Map { key, .. }) = self.frames.last_mut() {
            *key = Some(text);
        }
    }

    fn open(&mut self, frame: Frame, anchor: usize, mark: Marker) {
        if anchor != 0 {
            return self.fail(mark, ANCHORS.into());
        }
        let Some(pointer) = self.next_pointer() else {
            return self.fail(
                mark,
                "a map key must be a plain value, not a list or map".into(),
            );
        };
        if self.frames.len() >= MAX_DEPTH {
            return self.fail(
                mark,
                format!("nesting deeper than {MAX_DEPTH} levels; flatten the document"),
            );
        }
        self.locs.values.insert(pointer.clone(), pos(mark));
        self.frames.push(frame);
        self.pointers.push(pointer);
    }

    fn close(&mut self) {
        self.pointers.pop();
        let value = match self.frames.pop() {
            Some(Frame::Seq(items)) => Value::Array(items),
            Some(Frame::Map { map, .. }) => Value::Object(map),
            None => return,
        };
        self.finish_node(value);
    }
}

const ANCHORS: &str = "YAML anchors and aliases (`&name`, `*name`) are not supported in plans; repeat the value instead";

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.stopped {
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        mark,
                        "more than one YAML document; a plan file holds exactly one".into(),
                    );
                }
            }
            Event::Alias(_) => self.fail(mark, ANCHORS.into()),
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    return self.fail(mark, ANCHORS.into());
                }
                let Some(pointer) = self.next_pointer() else {
                    return self.key(text, mark);
                };
                let plain = style == TScalarStyle::Plain;
                let value = match tag {
                    None => resolve(text, plain),
                    Some(t) if t.handle == "tag:yaml.org,2002:" || t.handle == "!!" => {
                        match t.suffix.as_str() {
                            "str" => Ok(Value::String(text)),
                            _ => resolve(text, true),
                        }
                    }
                    Some(t) => Err(format!(
                        "YAML tag `{}{}` is not supported in plans; remove it",
                        t.handle, t.suffix
                    )),
                };
                match value {
                    Ok(v) => {
                        self.locs.values.insert(pointer, pos(mark));
                        self.finish_node(v);
                    }
                    Err(msg) => self.fail(mark, msg),
                }
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Seq(Vec::new()), anchor, mark),
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    map: Map::new(),
                    key: None,
                },
                anchor,
                mark,
            ),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

fn pos(mark: Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    (mark.line(), mark.col() + 1)
}

/// Resolves a scalar by the YAML 1.2 core schema: quoted scalars are strings; plain
/// ones may be null, booleans, integers or floats.
fn resolve(text: String, plain: bool) -> Result<Value, String> {
    if !plain {
        return Ok(Value::String(text));
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            return Err(format!(
                "`{text}` is not a number JSON can hold; quote it if you meant a string"
            ));
        }
        _ => {}
    }
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let radix = |prefix: &str, radix: u32| {
        digits
            .strip_prefix(prefix)
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return Ok(Value::from(if neg { -n } else { n }));
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.trim_start_matches('+').parse::<i64>() {
            return Ok(Value::from(n));
        }
        if let Ok(n) = text.trim_start_matches('+').parse::<u64>() {
            return Ok(Value::from(n));
        }
    }
    let floaty = digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && !digits.starts_with(['e', 'E']);
    if floaty && let Ok(f) = text.parse::<f64>() {
        return match Number::from_f64(f) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(format!(
                "`{text}` is not a number JSON can hold; quote it if you meant a string"
            )),
        };
    }
    Ok(Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> Value {
        locate(text, Format::Yaml).unwrap().0
    }

    fn err(text: &str, format: Format) -> Vec<SyntaxError> {
        locate(text, format).unwrap_err()
    }

    #[test]
    fn resolves_scalars_like_yaml_1_2() {
        let v = yaml(
            "a: 1\nb: -2.5\nc: true\nd: ~\ne: '1'\nf: 0x10\ng: 1e3\nh: yes\ni: 1.2.3\nj: !!str 5\n",
        );
        assert_eq!(
            v,
            json!({"a": 1, "b": -2.5, "c": true, "d": null, "e": "1", "f": 16, "g": 1000.0, "h": "yes", "i": "1.2.3", "j": "5"})
        );
    }

    #[test]
    fn records_positions_of_values_and_keys() {
        let (_, locs) = locate("steps:\n  - id: a\n    needs: [b, c]\n", Format::Yaml).unwrap();
        assert_eq!(locs.values["/steps/0/id"], (2, 9));
        assert_eq!(locs.keys["/steps/0/needs"], (3, 5));
        assert_eq!(locs.values["/steps/0/needs/1"], (3, 16));
    }

    #[test]
    fn json_positions_come_from_the_same_reader() {
        let (v, locs) = locate("{\n  \"a\": [1, {\"b\": 2}]\n}", Format::Json).unwrap();
        assert_eq!(v, json!({"a": [1, {"b": 2}]}));
        assert_eq!(locs.values["/a/1/b"], (2, 18));
    }

    #[test]
    fn rejects_duplicate_keys_anchors_and_bad_syntax() {
        assert_eq!(
            err("a: 1\nb: 2\na: 3\n", Format::Yaml),
            vec![SyntaxError {
                pos: Some((3, 1)),
                message: "duplicate key `a` (first at line 1 column 1); keep only one".into()
            }]
        );
        assert_eq!(
            err("{\"a\": 1, \"a\": 2}", Format::Json)[0].pos,
            Some((1, 10))
        );
        assert_eq!(err("a: &x 1\nb: *x\n", Format::Yaml)[0].message, ANCHORS);
        assert_eq!(
            err("a: [1, 2\n", Format::Yaml),
            vec![SyntaxError {
                pos: Some((2, 1)),
                message: "invalid YAML: while parsing a flow sequence, expected ',' or ']'".into()
            }]
        );
        assert_eq!(
            err("{\"a\": 1,}", Format::Json),
            vec![SyntaxError {
                pos: Some((1, 9)),
                message: "invalid JSON: trailing comma".into()
            }]
        );
        assert_eq!(err("a: 1\n---\nb: 2\n", Format::Yaml)[0].pos, Some((2, 1)));
        assert_eq!(err("a: .nan\n", Format::Yaml)[0].pos, Some((1, 4)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(locate(&deep, Format::Yaml).is_err());
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(
            err(&deep, Format::Yaml)[0].message,
            "invalid YAML: recursion limit exceeded"
        );
        assert!(locate(&deep, Format::Json).is_err());
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let e = err(&deep, Format::Yaml);
        assert_eq!(
            e[0].message,
            "nesting deeper than 64 levels; flatten the document"
        );
        assert_eq!(e[0].pos, Some((1, 65)));
        assert_eq!(
            err(&deep, Format::Json)[0].message,
            "nesting deeper than 64 levels; flatten the document"
        );
    }
}
