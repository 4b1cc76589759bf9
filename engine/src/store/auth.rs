//! API tokens and the audit log. Only a token's sha256 is stored, never its secret;
//! roles are kept as text here (the API knows what they mean).

use rusqlite::{ErrorCode, OptionalExtension, params};

use super::{Error, Result, Store, all, sql};
use crate::run::Ms;

/// A token as `medic token list` shows it: never the secret, nor its hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenRow {
    pub name: String,
    pub role: String,
    pub created_at: Ms,
    pub last_used_at: Option<Ms>,
    pub revoked_at: Option<Ms>,
}

/// One call to record in the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: Ms,
    /// The token's name; none when the call carried no valid token.
    pub token: Option<String>,
    pub role: Option<String>,
    pub method: String,
    pub path: String,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    /// The HTTP status of the answer, refusals included.
    pub status: u16,
    /// A break-glass call's mandatory reason.
    pub reason: Option<String>,
}

/// One row of the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: Ms,
    pub token: Option<String>,
    pub role: Option<String>,
    pub method: String,
    pub path: String,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub status: u16,
    pub reason: Option<String>,
}

const TOKEN_COLUMNS: &str = "name, role, created_at, last_used_at, revoked_at";

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        name: row.get(0)?,
        role: row.get(1)?,
        created_at: row.get(2)?,
        last_used_at: row.get(3)?,
        revoked_at: row.get(4)?,
    })
}

impl Store {
    /// Stores a new token by the sha256 `hash` of its secret. A live token with the
    /// same name is [`Error::TokenExists`].
    pub async fn create_token(&self, name: &str, role: &str, hash: &str, at: Ms) -> Result<()> {
        let v = (name.to_owned(), role.to_owned(), hash.to_owned());
        self.writer
            .write(move |conn| {
                match conn.execute(
                    "INSERT INTO tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![v.0, v.1, v.2, at],
                ) {
                    Ok(_) => Ok(()),
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == ErrorCode::ConstraintViolation =>
                    {
                        Err(Error::TokenExists(v.0))
                    }
                    Err(e) => Err(sql("storing the token")(e)),
                }
            })
            .await
    }

    /// The live (not revoked) token whose secret hashes to `hash`.
    pub async fn live_token(&self, hash: &str) -> Result<Option<TokenRow>> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"
            ))
            .and_then(|mut s| s.query_row([&hash], token_row).optional())
            .map_err(sql("looking up the token"))
        })
        .await
    }

    /// Notes that the live token `name` was used at `at`.
    pub async fn touch_token(&self, name: &str, at: Ms) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                conn.execute(
                    "UPDATE tokens SET last_used_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                    params![name, at],
                )
                .map_err(sql("noting the token's use"))?;
                Ok(())
            })
            .await
    }

    /// Every token, live ones first, then by name.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        self.read(|conn| {
            all(
                conn,
                "listing tokens",
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens
                     ORDER BY revoked_at IS NOT NULL, name, created_at"
                ),
                [],
                token_row,
            )
        })
        .await
    }

    /// Revokes the live token `name`: its secret stops working at once, in every
    /// process (each request looks the token up).
    pub async fn revoke_token(&self, name: &str, at: Ms) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                        params![name, at],
                    )
                    .map_err(sql("revoking the token"))?;
                if n == 0 {
                    return Err(Error::TokenNotFound(name));
                }
                Ok(())
            })
            .await
    }

    /// Appends to the audit log; returns once it is durable.
    pub async fn record_audit(&self, e: AuditEntry) -> Result<()> {
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO audit (at, token, role, method, path, run_id, step_id, status, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        e.at, e.token, e.role, e.method, e.path, e.run_id, e.step_id, e.status,
                        e.reason
                    ])
                })
                .map_err(sql("recording the audit entry"))?;
                Ok(())
            })
            .await
    }

    /// The audit log, newest first.
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditRow>> {
        self.read(move |conn| {
            all(
                conn,
                "reading the audit log",
                "SELECT id, at, token, role, method, path, run_id, step_id, status, reason
                 FROM audit ORDER BY id DESC LIMIT ?1",
                [limit as i64],
                |row| {
                    Ok(AuditRow {
                        id: row.get(0)?,
                        at: row.get(1)?,
                        token: row.get(2)?,
                        role: row.get(3)?,
                        method: row.get(4)?,
                        path: row.get(5)?,
                        run_id: row.get(6)?,
                        step_id: row.get(7)?,
                        status: row.get(8)?,
                        reason: row.get(9)?,
                    })
                },
            )
        })
        .await
    }
}
