//! Rendering SQL text: identifiers in backticks, values as literals, rows as INSERT
//! statements. Every name and value that reaches a statement goes through here, so a
//! table called ``x`; DROP DATABASE y; --`` stays a table name.

use std::fmt::Write;

use crate::value::Val;

/// An identifier in backticks; a backtick inside is doubled, the only escape MySQL
/// and MariaDB know inside quoted identifiers. NUL cannot be part of a name.
pub fn quote_ident(name: &str) -> Result<String, String> {
    if name.is_empty() || name.contains('\0') {
        return Err(format!(
            "`{}` is not a valid identifier",
            name.escape_debug()
        ));
    }
    Ok(format!("`{}`", name.replace('`', "``")))
}

/// `db`.`table`.
pub fn qualified(db: &str, table: &str) -> Result<String, String> {
    Ok(format!("{}.{}", quote_ident(db)?, quote_ident(table)?))
}

/// A string literal in single quotes. Quotes are doubled (safe in every sql_mode,
/// NO_BACKSLASH_ESCAPES included) and backslashes and control characters escaped
/// (dumps set a sql_mode where backslash escapes hold).
pub fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A value as a literal: NULL, numbers as written, text quoted, bytes as a hex literal
/// (any bytes restore exactly, whatever the connection's character set).
pub fn literal(v: &Val) -> Result<String, String> {
    Ok(match v {
        Val::Null => "NULL".into(),
        Val::Int(i) => i.to_string(),
        Val::UInt(u) => u.to_string(),
        Val::Float(f) if f.is_finite() => {
            // Debug keeps an exponent for huge and tiny numbers and always round-trips.
            format!("{f:?}")
        }
        Val::Float(f) => return Err(format!("{f} has no SQL literal")),
        Val::Text(s) => quote_str(s),
        Val::Bytes(b) => {
            let mut hex = String::with_capacity(b.len() * 2 + 3);
            hex.push_str("X'");
            for byte in b {
                let _ = write!(hex, "{byte:02x}");
            }
            hex.push('\'');
            hex
        }
    })
}

/// `INSERT INTO `table` (`a`,`b`) VALUES (..),(..);` followed by a newline; `table`
/// unqualified (the dump selects the database first).
pub fn insert(table: &str, columns: &[String], rows: &[Vec<Val>]) -> Result<String, String> {
    let mut out = format!("INSERT INTO {} (", quote_ident(table)?);
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote_ident(c)?);
    }
    out.push_str(") VALUES ");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('(');
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&literal(v)?);
        }
        out.push(')');
    }
    out.push_str(";\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_identifiers_doubles_backticks_so_names_cannot_inject() {
        assert_eq!(quote_ident("orders").unwrap(), "`orders`");
        assert_eq!(
            quote_ident("x`; DROP DATABASE y; --").unwrap(),
            "`x``; DROP DATABASE y; --`"
        );
        assert_eq!(qualified("d`b", "t").unwrap(), "`d``b`.`t`");
        assert!(quote_ident("").is_err());
        assert!(quote_ident("a\0b").is_err());
    }

    #[test]
    fn quoting_strings_escapes_quotes_backslashes_and_controls() {
        assert_eq!(quote_str("it's"), "'it''s'");
        assert_eq!(quote_str("a\\'b"), "'a\\\\''b'");
        assert_eq!(quote_str("l1\nl2\r\0\x1a"), "'l1\\nl2\\r\\0\\Z'");
        assert_eq!(quote_str("ünï"), "'ünï'");
    }

    #[test]
    fn insert_renders_null_numbers_text_and_bytes_as_hex() {
        let cols = vec!["id".to_string(), "name".into(), "blob".into(), "x".into()];
        let rows = vec![
            vec![
                Val::Int(-1),
                Val::Text("O'Brien".into()),
                Val::Bytes(vec![0, 0xff]),
                Val::Null,
            ],
            vec![
                Val::UInt(u64::MAX),
                Val::Text(String::new()),
                Val::Bytes(vec![]),
                Val::Float(1.5),
            ],
        ];
        assert_eq!(
            insert("t`x", &cols, &rows).unwrap(),
            "INSERT INTO `t``x` (`id`,`name`,`blob`,`x`) VALUES \
             (-1,'O''Brien',X'00ff',NULL),(18446744073709551615,'',X'',1.5);\n"
        );
    }

    #[test]
    fn insert_floats_round_trip_and_refuse_nan() {
        assert_eq!(literal(&Val::Float(1e300)).unwrap(), "1e300");
        assert_eq!(literal(&Val::Float(0.1)).unwrap(), "0.1");
        assert_eq!(literal(&Val::Float(3.0)).unwrap(), "3.0");
        assert!(literal(&Val::Float(f64::NAN)).is_err());
    }
}
