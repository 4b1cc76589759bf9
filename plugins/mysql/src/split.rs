//! Splitting a dump into statements for `restore`, chunk by chunk as it is read back:
//! a `;` ends a statement only outside quotes ('..', "..", `..`, with backslash and
//! doubled-quote escapes) and comments (`-- `, `#`, `/* */`). Comments are dropped.

/// Fed bytes in any chunking, hands out each complete statement once.
#[derive(Default)]
pub struct Splitter {
    /// Bytes of the statement in progress (comments already dropped).
    current: Vec<u8>,
    state: State,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Code,
    /// Inside a quote of this byte; `escaped` after a backslash.
    Quoted {
        quote: u8,
        escaped: bool,
    },
    /// A quote closed right here: a second one means a doubled (escaped) quote.
    QuoteEnd(u8),
    /// Seen `-`; a second `-` and a space (or end of line) start a comment.
    Dash,
    DashDash,
    Slash,
    LineComment,
    BlockComment {
        star: bool,
    },
}

impl Splitter {
    /// Consumes `chunk`; returns the statements it completed (trimmed, non-empty).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for &b in chunk {
            self.byte(b, &mut done)?;
        }
        Ok(done)
    }

    /// Ends the input: the last statement may lack its `;`; an open quote or comment
    /// is an error (a truncated dump).
    pub fn finish(mut self) -> Result<Option<String>, String> {
        match self.state {
            State::Quoted { quote, .. } => {
                return Err(format!(
                    "the dump ends inside a {} quote: it is truncated",
                    quote as char
                ));
            }
            State::BlockComment { .. } => {
                return Err("the dump ends inside a /* comment: it is truncated".into());
            }
            State::Dash => self.current.push(b'-'),
            State::DashDash => self.current.extend_from_slice(b"--"),
            State::Slash => self.current.push(b'/'),
            _ => {}
        }
        let mut done = Vec::new();
        self.emit(&mut done)?;
        Ok(done.pop())
    }

    fn emit(&mut self, done: &mut Vec<String>) -> Result<(), String> {
        let bytes = std::mem::take(&mut self.current);
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "a statement of the dump is not UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        let text = text.trim();
        if !text.is_empty() {
            done.push(text.to_string());
        }
        Ok(())
    }

    fn byte(&mut self, b: u8, done: &mut Vec<String>) -> Result<(), String> {
        self.state = match self.state {
            State::Code => return self.code(b, done),
            State::Quoted { quote, escaped } => {
                self.current.push(b);
                if escaped {
                    State::Quoted {
                        quote,
                        escaped: false,
                    }
                } else if b == b'\\' && quote != b'`' {
                    State::Quoted {
                        quote,
                        escaped: true,
                    }
                } else if b == quote {
                    State::QuoteEnd(quote)
                } else {
                    State::Quoted {
                        quote,
                        escaped: false,
                    }
                }
            }
            State::QuoteEnd(q) if b == q => {
                self.current.push(b);
                State::Quoted {
                    quote: q,
                    escaped: false,
                }
            }
            State::QuoteEnd(_) => {
                self.state = State::Code;
                return self.code(b, done);
            }
            State::Dash if b == b'-' => State::DashDash,
            State::Dash => {
                self.current.push(b'-');
                self.state = State::Code;
                return self.code(b, done);
            }
            State::DashDash if b == b' ' || b == b'\t' || b == b'\n' || b == b'\r' => {
                if b == b'\n' {
                    State::Code
                } else {
                    State::LineComment
                }
            }
            State::DashDash => {
                // `a--b` is arithmetic, not a comment.
                self.current.extend_from_slice(b"--");
                self.state = State::Code;
                return self.code(b, done);
            }
            State::Slash if b == b'*' => {
                self.current.extend_from_slice(b"/*");
                State::BlockComment { star: false }
            }
            State::Slash => {
                self.current.push(b'/');
                self.state = State::Code;
                return self.code(b, done);
            }
            State::LineComment if b == b'\n' => {
                self.current.push(b'\n');
                State::Code
            }
            State::LineComment => State::LineComment,
            State::BlockComment { star: true } if b == b'/' => {
                self.current.push(b'/');
                State::Code
            }
            State::BlockComment { .. } => {
                self.current.push(b);
                State::BlockComment { star: b == b'*' }
            }
        };
        Ok(())
    }

    fn code(&mut self, b: u8, done: &mut Vec<String>) -> Result<(), String> {
        self.state = match b {
            b';' => {
                self.emit(done)?;
                State::Code
            }
            b'\'' | b'"' | b'`' => {
                self.current.push(b);
                State::Quoted {
                    quote: b,
                    escaped: false,
                }
            }
            b'-' => State::Dash,
            b'/' => State::Slash,
            b'#' => State::LineComment,
            _ => {
                self.current.push(b);
                State::Code
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in_chunks(text: &str, size: usize) -> Vec<String> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(size) {
            out.extend(s.push(chunk).unwrap());
        }
        out.extend(s.finish().unwrap());
        out
    }

    #[test]
    fn splitting_respects_quotes_escapes_and_comments_in_any_chunking() {
        let dump = "-- medic dump\nSET NAMES utf8mb4;\n\
                    INSERT INTO `a;b` VALUES ('x;y','it''s','back\\\\\\';'),(\"q\\\";\",2);\n\
                    /* block; comment */ SELECT 1-1, 3--2 ;# trailing; comment\n\
                    SELECT 'ünï;'";
        let want = vec![
            "SET NAMES utf8mb4".to_string(),
            "INSERT INTO `a;b` VALUES ('x;y','it''s','back\\\\\\';'),(\"q\\\";\",2)".into(),
            "/* block; comment */ SELECT 1-1, 3--2".into(),
            "SELECT 'ünï;'".into(),
        ];
        for size in [1, 2, 3, 7, 1000] {
            assert_eq!(split_in_chunks(dump, size), want, "chunk size {size}");
        }
    }

    #[test]
    fn splitting_backticks_do_not_take_backslash_escapes() {
        assert_eq!(
            split_in_chunks("DROP TABLE `a\\`;SELECT 2;", 4),
            vec!["DROP TABLE `a\\`".to_string(), "SELECT 2".into()]
        );
    }

    #[test]
    fn splitting_a_truncated_dump_is_an_error() {
        let mut s = Splitter::default();
        assert_eq!(
            s.push(b"SELECT 1; INSERT INTO t VALUES ('abc").unwrap(),
            vec!["SELECT 1"]
        );
        assert!(s.finish().unwrap_err().contains("truncated"));
        let mut s = Splitter::default();
        s.push(b"SELECT 1 /* open").unwrap();
        assert!(s.finish().is_err());
    }

    #[test]
    fn splitting_keeps_executable_comments() {
        assert_eq!(
            split_in_chunks(
                "CREATE DATABASE `d` /*!40100 DEFAULT CHARSET=utf8mb4 */;",
                5
            ),
            vec!["CREATE DATABASE `d` /*!40100 DEFAULT CHARSET=utf8mb4 */".to_string()]
        );
    }

    #[test]
    fn splitting_empty_statements_are_dropped() {
        assert_eq!(
            split_in_chunks(";;\n  ;SELECT 1;;", 2),
            vec!["SELECT 1".to_string()]
        );
    }
}
