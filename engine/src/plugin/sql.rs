//! The host side of the `sql` interface: a call's sessions on the operator's
//! MySQL-protocol connections (`mysql_async`). A plugin names a connection; the host
//! checks the plan's grant, resolves the name through medic.toml (address, user, the
//! password's secret, TLS) and keeps one session per name until the call's store
//! drops. The guest never sees an address or a password.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::{Protocol, Queryable};
use mysql_async::{Column, Conn, Opts, OptsBuilder, QueryResult, SslOpts, Value};
use tokio::time::Instant;

use super::bindings::sql as wit;
use super::config::{OperatorConfig, SqlConnection, SqlTls, read_secret};
use super::wasi::CallState;

/// Largest row set one statement may return (an estimate of its size in the guest:
/// every value's payload plus 16 bytes each). A guest has 64 MiB of memory in all.
pub const ROW_SET_LIMIT: usize = 16 << 20;
/// Longest wait for a connection (and its TLS and login) to be established; never
/// beyond what is left of the call's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Server error numbers after which another attempt may succeed: too many
/// connections, server shutdown, aborted connection, network errors, lock wait
/// timeout, deadlock, connection killed (MariaDB), idle client timeout (MariaDB).
const RETRYABLE_CODES: &[u16] = &[
    1040, 1053, 1152, 1158, 1159, 1160, 1161, 1205, 1213, 1927, 4031,
];
const CONNECTING: &str = "connecting";
/// After these the server has ended the session.
const SESSION_ENDING_CODES: &[u16] = &[1053, 1152, 1927, 4031];

/// The SQL sessions of one call, by connection name.
pub(super) struct Sessions {
    open: HashMap<String, Session>,
    /// Connections whose session broke during this call, and why: a later statement
    /// on them fails rather than silently running in a fresh session.
    lost: HashMap<String, String>,
    /// When the call's wall-clock timeout expires.
    deadline: Instant,
}

struct Session {
    conn: Conn,
    /// To reach the server again with `KILL` when the call ends mid-statement.
    opts: Opts,
    /// A statement was sent and its result not read to the end. Still set when the
    /// store drops: the call timed out (or trapped) while the server was working.
    busy: bool,
}

impl Sessions {
    pub fn new(timeout: Duration) -> Sessions {
        Sessions {
            open: HashMap::new(),
            lost: HashMap::new(),
            deadline: Instant::now() + timeout,
        }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        // Dropping a `Conn` closes it in a spawned task, but only after reading what
        // the server still sends: a statement the call's timeout abandoned would keep
        // running (and holding its locks) until it finished. Kill it instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for (name, session) in self.open.drain() {
            if !session.busy {
                continue;
            }
            let id = session.conn.id();
            let opts = session.opts;
            runtime.spawn(async move {
                let killed = async {
                    let mut conn = Conn::new(opts).await?;
                    conn.query_drop(format!("KILL {id}")).await?;
                    conn.disconnect().await
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, killed).await {
                    Ok(Ok(())) => tracing::info!(
                        connection = %name,
                        thread = id,
                        "killed the SQL session of a call that ended mid-statement"
                    ),
                    Ok(Err(e)) => tracing::warn!(
                        connection = %name,
                        thread = id,
                        "could not kill the SQL session of a call that ended mid-statement: {e}"
                    ),
                    Err(_) => tracing::warn!(
                        connection = %name,
                        thread = id,
                        "could not kill the SQL session of a call that ended mid-statement: timed out"
                    ),
                }
            });
        }
    }
}

/// `query(connection, statement, params)` of the guest `state.caller`: runs the
/// statement in the call's session on `name`, opening it on first use.
pub(super) async fn query(
    state: &mut CallState,
    name: String,
    statement: String,
    params: Vec<wit::Value>,
) -> Result<wit::RowSet, wit::SqlError> {
    // Its own handle, so the config can be borrowed while the sessions change.
    let operator = state.operator.clone();
    let (config, password) = resolve(&operator, &state.grants.sql, &state.caller.plugin, &name)?;
    let scrub = Scrub(password.as_deref());
    let sessions = &mut state.sql;
    if let Some(why) = sessions.lost.get(&name) {
        return Err(wit::SqlError {
            message: format!(
                "SQL connection `{name}`: this call's session was lost ({why}); its variables, \
                 transaction and locks are gone, so the call has to start again"
            ),
            code: None,
            retryable: true,
        });
    }
    if !sessions.open.contains_key(&name) {
        let session = connect(&name, config, password.clone(), sessions.deadline, &scrub).await?;
        tracing::debug!(
            plugin = %state.caller.plugin,
            connection = %name,
            thread = session.conn.id(),
            "opened SQL session"
        );
        sessions.open.insert(name.clone(), session);
    }
    let session = sessions
        .open
        .get_mut(&name)
        .expect("opened above if it was not open");

    let started = std::time::Instant::now();
    // Stays set if this future is dropped (the call timed out) before the end.
    session.busy = true;
    let outcome = execute(&mut session.conn, &name, &statement, params).await;
    tracing::debug!(
        plugin = %state.caller.plugin,
        connection = %name,
        elapsed_ms = started.elapsed().as_millis() as u64,
        rows = outcome.as_ref().map_or(0, |r| r.rows.len()),
        ok = outcome.is_ok(),
        "ran SQL statement"
    );
    match outcome {
        Ok(rows) => {
            session.busy = false;
            Ok(rows)
        }
        // The rest of the result stays unread: the driver drains it before the
        // session's next statement.
        Err(Outcome::TooLarge(error)) => {
            session.busy = false;
            Err(error)
        }
        Err(Outcome::Driver(e)) => {
            let (error, lost) = fault(&name, config, &e, &scrub, "running a statement");
            if lost {
                sessions.open.remove(&name);
                sessions.lost.insert(name, error.message.clone());
            } else {
                session.busy = false;
            }
            Err(error)
        }
    }
}

/// The operator's connection `name`, if the plan grants it, and its password.
fn resolve<'a>(
    operator: &'a OperatorConfig,
    granted: &[String],
    plugin: &str,
    name: &str,
) -> Result<(&'a SqlConnection, Option<String>), wit::SqlError> {
    if !granted.iter().any(|g| g == name) {
        return Err(refused(format!(
            "SQL connection `{name}` is not granted to plugin `{plugin}`: list it under the plan's \
             `grants: {{ sql: [{name}] }}` for this plugin"
        )));
    }
    let Some(config) = operator.sql.get(name) else {
        return Err(refused(format!(
            "SQL connection `{name}` is not configured: add a [sql.{name}] section (address, \
             user, password_secret) to medic's configuration (medic.toml)"
        )));
    };
    let password = match &config.password_secret {
        Some(secret) => Some(
            read_secret(operator.secrets_dir.as_deref(), secret).map_err(|e| {
                refused(format!(
                    "SQL connection `{name}`: its password_secret `{secret}`: {e}"
                ))
            })?,
        ),
        None => None,
    };
    Ok((config, password))
}

/// Opens a session, giving up after [`CONNECT_TIMEOUT`] or at the call's deadline.
async fn connect(
    name: &str,
    config: &SqlConnection,
    password: Option<String>,
    deadline: Instant,
    scrub: &Scrub<'_>,
) -> Result<Session, wit::SqlError> {
    let opts = opts(name, config, password)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .min(CONNECT_TIMEOUT);
    match tokio::time::timeout(left, Conn::new(opts.clone())).await {
        Err(_) => Err(wit::SqlError {
            message: format!(
                "SQL connection `{name}` ({}): connecting timed out after {}",
                config.address,
                humantime::format_duration(left)
            ),
            code: None,
            retryable: true,
        }),
        Ok(Err(e)) => Err(fault(name, config, &e, scrub, CONNECTING).0),
        Ok(Ok(conn)) => Ok(Session {
            conn,
            opts,
            busy: false,
        }),
    }
}

/// Runs one statement: the text protocol without params (one round trip, and
/// statements that cannot be prepared work too), a prepared statement with them.
async fn execute(
    conn: &mut Conn,
    name: &str,
    statement: &str,
    params: Vec<wit::Value>,
) -> Result<wit::RowSet, Outcome> {
    if params.is_empty() {
        let mut result = conn.query_iter(statement).await?;
        collect(&mut result, name, statement).await
    } else {
        let params = params.into_iter().map(value_from_wit).collect();
        let mut result = conn
            .exec_iter(statement, mysql_async::Params::Positional(params))
            .await?;
        collect(&mut result, name, statement).await
    }
}

enum Outcome {
    Driver(mysql_async::Error),
    TooLarge(wit::SqlError),
}

impl From<mysql_async::Error> for Outcome {
    fn from(e: mysql_async::Error) -> Outcome {
        Outcome::Driver(e)
    }
}

/// Reads the first result set (within [`ROW_SET_LIMIT`]) and discards any further
/// ones (a statement that is really several).
async fn collect<P: Protocol>(
    result: &mut QueryResult<'_, 'static, P>,
    name: &str,
    statement: &str,
) -> Result<wit::RowSet, Outcome> {
    let columns: Vec<String> = result
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let mut rows = Vec::new();
    let mut size = 0usize;
    while let Some(row) = result.next().await? {
        let meta = row.columns();
        let values = row.unwrap();
        let mut out = Vec::with_capacity(values.len());
        for (value, column) in values.into_iter().zip(meta.iter()) {
            let value = value_to_wit(value, column);
            size += 16 + payload(&value);
            out.push(value);
        }
        size += 16;
        rows.push(out);
        if size > ROW_SET_LIMIT {
            return Err(Outcome::TooLarge(wit::SqlError {
                message: format!(
                    "SQL connection `{name}`: the result of `{}` passed {} MiB after {} rows; \
                     select fewer rows (LIMIT, a narrower WHERE) or fewer columns",
                    preview(statement),
                    ROW_SET_LIMIT >> 20,
                    rows.len()
                ),
                code: None,
                retryable: false,
            }));
        }
    }
    let affected_rows = result.affected_rows();
    let last_insert_id = result.last_insert_id().unwrap_or(0);
    while !result.is_empty() {
        result.next().await?;
    }
    Ok(wit::RowSet {
        columns,
        rows,
        affected_rows,
        last_insert_id,
    })
}

fn opts(name: &str, c: &SqlConnection, password: Option<String>) -> Result<Opts, wit::SqlError> {
    let (host, port) = c
        .address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            refused(format!(
                "[sql.{name}] address = `{}`: expected host:port, e.g. 127.0.0.1:3306",
                c.address
            ))
        })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tls = match c.tls {
        SqlTls::Off => None,
        SqlTls::Required => Some(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        SqlTls::Verify => Some(SslOpts::default()),
    };
    Ok(OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(&c.user))
        .pass(password)
        .db_name(c.database.clone())
        // The driver would switch a loopback address to the server's Unix socket;
        // the operator named an address, so that is what we use.
        .prefer_socket(false)
        .ssl_opts(tls)
        .into())
}

/// Replaces a password that a driver message might quote; errors end up in run
/// events and the database.
struct Scrub<'a>(Option<&'a str>);

impl Scrub<'_> {
    fn apply(&self, text: String) -> String {
        match self.0 {
            Some(password) if !password.is_empty() && text.contains(password) => {
                text.replace(password, "<password>")
            }
            _ => text,
        }
    }
}

/// The guest's error for a driver error, and whether the session is gone.
fn fault(
    name: &str,
    c: &SqlConnection,
    e: &mysql_async::Error,
    scrub: &Scrub<'_>,
    doing: &str,
) -> (wit::SqlError, bool) {
    use mysql_async::{DriverError, Error};
    let at = format!("SQL connection `{name}` ({})", c.address);
    let (message, code, retryable, lost) = match e {
        Error::Server(s) => (
            format!(
                "{at}: {doing}: the server answered error {} ({}): {}",
                s.code, s.state, s.message
            ),
            Some(s.code),
            RETRYABLE_CODES.contains(&s.code),
            SESSION_ENDING_CODES.contains(&s.code),
        ),
        Error::Io(io) => (
            if doing == CONNECTING {
                format!("{at}: {doing}: {io}")
            } else {
                format!("{at}: {doing}: the connection was lost: {io}")
            },
            None,
            // A certificate the operator asked to verify will not become valid by
            // retrying; a refused or broken connection may recover.
            matches!(io, mysql_async::IoError::Io(_)),
            true,
        ),
        Error::Driver(DriverError::ConnectionClosed | DriverError::PacketOutOfOrder) => (
            format!("{at}: {doing}: the connection was lost: {e}"),
            None,
            true,
            true,
        ),
        Error::Driver(d) => (format!("{at}: {doing}: {d}"), None, false, false),
        Error::Other(_) | Error::Url(_) => (format!("{at}: {doing}: {e}"), None, false, false),
    };
    let message = scrub.apply(message);
    (
        wit::SqlError {
            message,
            code,
            retryable,
        },
        lost,
    )
}

fn refused(message: String) -> wit::SqlError {
    wit::SqlError {
        message,
        code: None,
        retryable: false,
    }
}

fn value_from_wit(v: wit::Value) -> Value {
    match v {
        wit::Value::Null => Value::NULL,
        wit::Value::Int(i) => Value::Int(i),
        wit::Value::Uint(u) => Value::UInt(u),
        wit::Value::Float(f) => Value::Double(f),
        wit::Value::Text(s) => Value::Bytes(s.into_bytes()),
        wit::Value::Bytes(b) => Value::Bytes(b),
    }
}

/// A driver value as the guest sees it. The binary protocol (statements with
/// params) types its values; the text protocol sends text, typed here by its
/// column. Decimals, dates and times become text, exactly as the server wrote them.
fn value_to_wit(v: Value, column: &Column) -> wit::Value {
    let ty = column.column_type();
    let unsigned = column.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    match v {
        Value::NULL => wit::Value::Null,
        Value::Int(i) => wit::Value::Int(i),
        Value::UInt(u) => wit::Value::Uint(u),
        Value::Float(f) => wit::Value::Float(f64::from(f)),
        Value::Double(d) => wit::Value::Float(d),
        Value::Date(y, mo, d, h, mi, s, us) => wit::Value::Text(
            if matches!(
                ty,
                ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE
            ) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else if us > 0 {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            },
        ),
        Value::Time(negative, days, h, mi, s, us) => {
            let sign = if negative { "-" } else { "" };
            let hours = u64::from(days) * 24 + u64::from(h);
            wit::Value::Text(if us > 0 {
                format!("{sign}{hours:02}:{mi:02}:{s:02}.{us:06}")
            } else {
                format!("{sign}{hours:02}:{mi:02}:{s:02}")
            })
        }
        Value::Bytes(bytes) => typed_text(bytes, ty, unsigned, column.character_set()),
    }
}

/// The binary character set: a column of bytes, not text.
const BINARY_CHARSET: u16 = 63;

fn typed_text(bytes: Vec<u8>, ty: ColumnType, unsigned: bool, charset: u16) -> wit::Value {
    use ColumnType::*;
    let text = |bytes: Vec<u8>| match String::from_utf8(bytes) {
        Ok(s) => wit::Value::Text(s),
        Err(e) => wit::Value::Bytes(e.into_bytes()),
    };
    let parsed = std::str::from_utf8(&bytes).ok();
    match ty {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => {
            let value = if unsigned {
                parsed.and_then(|s| s.parse().ok()).map(wit::Value::Uint)
            } else {
                parsed.and_then(|s| s.parse().ok()).map(wit::Value::Int)
            };
            value.unwrap_or_else(|| text(bytes))
        }
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => parsed
            .and_then(|s| s.parse().ok())
            .map(wit::Value::Float)
            .unwrap_or_else(|| text(bytes)),
        MYSQL_TYPE_BIT | MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_VECTOR => wit::Value::Bytes(bytes),
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
            if charset == BINARY_CHARSET =>
        {
            wit::Value::Bytes(bytes)
        }
        _ => text(bytes),
    }
}

fn payload(v: &wit::Value) -> usize {
    match v {
        wit::Value::Text(s) => s.len(),
        wit::Value::Bytes(b) => b.len(),
        _ => 0,
    }
}

fn preview(statement: &str) -> String {
    const MAX: usize = 80;
    let one_line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn same(a: wit::Value, b: wit::Value) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    fn column(ty: ColumnType, charset: u16, flags: ColumnFlags) -> Column {
        Column::new(ty)
            .with_character_set(charset)
            .with_flags(flags)
    }

    #[test]
    fn text_protocol_values_are_typed_by_their_column() {
        let int = column(ColumnType::MYSQL_TYPE_LONGLONG, 63, ColumnFlags::empty());
        let uint = column(
            ColumnType::MYSQL_TYPE_LONGLONG,
            63,
            ColumnFlags::UNSIGNED_FLAG,
        );
        let double = column(ColumnType::MYSQL_TYPE_DOUBLE, 63, ColumnFlags::empty());
        let decimal = column(ColumnType::MYSQL_TYPE_NEWDECIMAL, 63, ColumnFlags::empty());
        let blob = column(ColumnType::MYSQL_TYPE_BLOB, 63, ColumnFlags::BINARY_FLAG);
        let text = column(ColumnType::MYSQL_TYPE_VAR_STRING, 45, ColumnFlags::empty());
        let date = column(ColumnType::MYSQL_TYPE_DATE, 63, ColumnFlags::empty());
        let bytes = |s: &str| Value::Bytes(s.as_bytes().to_vec());
        same(value_to_wit(bytes("-42"), &int), wit::Value::Int(-42));
        same(
            value_to_wit(bytes("18446744073709551615"), &uint),
            wit::Value::Uint(u64::MAX),
        );
        same(value_to_wit(bytes("1.5"), &double), wit::Value::Float(1.5));
        same(
            value_to_wit(bytes("12.30"), &decimal),
            wit::Value::Text("12.30".into()),
        );
        same(
            value_to_wit(Value::Bytes(vec![0, 255]), &blob),
            wit::Value::Bytes(vec![0, 255]),
        );
        same(
            value_to_wit(bytes("héllo"), &text),
            wit::Value::Text("héllo".into()),
        );
        same(
            value_to_wit(bytes("2026-11-23"), &date),
            wit::Value::Text("2026-11-23".into()),
        );
        same(value_to_wit(Value::NULL, &int), wit::Value::Null);
    }

    #[test]
    fn binary_protocol_dates_and_times_become_text() {
        let date = column(ColumnType::MYSQL_TYPE_DATE, 63, ColumnFlags::empty());
        let datetime = column(ColumnType::MYSQL_TYPE_DATETIME, 63, ColumnFlags::empty());
        let time = column(ColumnType::MYSQL_TYPE_TIME, 63, ColumnFlags::empty());
        same(
            value_to_wit(Value::Date(2026, 11, 23, 0, 0, 0, 0), &date),
            wit::Value::Text("2026-11-23".into()),
        );
        same(
            value_to_wit(Value::Date(2026, 11, 23, 20, 5, 9, 120), &datetime),
            wit::Value::Text("2026-11-23 20:05:09.000120".into()),
        );
        same(
            value_to_wit(Value::Time(true, 1, 2, 3, 4, 0), &time),
            wit::Value::Text("-26:03:04".into()),
        );
    }

    #[test]
    fn errors_are_classified_by_server_code_and_connection_state() {
        let config = SqlConnection {
            address: "127.0.0.1:3306".into(),
            user: "medic".into(),
            password_secret: Some("pw".into()),
            database: None,
            tls: SqlTls::Off,
        };
        let scrub = Scrub(Some("hunter2"));
        let server = |code: u16, message: &str| {
            let e = mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: message.into(),
                state: "HY000".into(),
            });
            let (error, lost) = fault("primary", &config, &e, &scrub, "running a statement");
            (error.code, error.retryable, lost, error.message)
        };
        for code in [1205, 1213, 1040] {
            let (got, retryable, lost, _) = server(code, "x");
            assert!(got == Some(code) && retryable && !lost, "{code}");
        }
        for code in [1053, 1927] {
            let (_, retryable, lost, _) = server(code, "x");
            assert!(retryable && lost, "{code}");
        }
        for code in [1045, 1064, 1146] {
            let (_, retryable, lost, _) = server(code, "x");
            assert!(!retryable && !lost, "{code}");
        }
        let (_, _, _, message) = server(1045, "Access denied (hunter2)");
        assert!(
            !message.contains("hunter2") && message.contains("primary"),
            "{message}"
        );

        let refused = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let (error, _) = fault("primary", &config, &refused, &scrub, CONNECTING);
        assert!(error.retryable && error.code.is_none(), "{}", error.message);
        let closed = mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed);
        let (error, lost) = fault("primary", &config, &closed, &scrub, "running a statement");
        assert!(error.retryable && lost);
    }

    #[test]
    fn a_quoted_password_is_scrubbed() {
        let scrub = Scrub(Some("hunter2"));
        assert_eq!(scrub.apply("bad: hunter2!".to_string()), "bad: <password>!");
        assert_eq!(Scrub(Some("")).apply("x".to_string()), "x");
    }
}
