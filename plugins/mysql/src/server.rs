//! One granted connection as the actions use it: statements with a stated purpose,
//! errors turned into step failures that name the connection, the purpose and what
//! to do, and the server's flavor read once per call.

use std::cell::OnceCell;

use medic_sdk::Failure;

use crate::dialect::Flavor;
use crate::host;
use crate::status::ReplicaStatus;
use crate::value::{Rows, SqlError, Val};

pub struct Server {
    /// The connection name the plan granted (`grants.sql`); never an address.
    pub name: String,
    flavor: OnceCell<Flavor>,
}

impl Server {
    pub fn new(name: &str) -> Server {
        Server {
            name: name.to_string(),
            flavor: OnceCell::new(),
        }
    }

    /// Runs `statement` (no placeholders); `purpose` says why, for the error.
    pub fn query(&self, purpose: &str, statement: &str) -> Result<Rows, Failure> {
        self.query_with(purpose, statement, &[])
    }

    pub fn query_with(
        &self,
        purpose: &str,
        statement: &str,
        params: &[Val],
    ) -> Result<Rows, Failure> {
        host::query(&self.name, statement, params).map_err(|e| self.failure(purpose, &e))
    }

    /// The first value of the first row as text ("" for NULL or no row).
    pub fn text(&self, purpose: &str, statement: &str) -> Result<String, Failure> {
        let rows = self.query(purpose, statement)?;
        Ok(rows.scalar().and_then(Val::text).unwrap_or_default())
    }

    pub fn flavor(&self) -> Result<Flavor, Failure> {
        if let Some(f) = self.flavor.get() {
            return Ok(*f);
        }
        let rows = self.query(
            "reading the server version",
            "SELECT VERSION() AS version, @@version_comment AS version_comment",
        )?;
        let version = rows
            .get(0, &["version"])
            .and_then(Val::text)
            .unwrap_or_default();
        let comment = rows
            .get(0, &["version_comment"])
            .and_then(Val::text)
            .unwrap_or_default();
        let flavor = Flavor::detect(&version, &comment);
        let _ = self.flavor.set(flavor);
        Ok(flavor)
    }

    /// The replica state, `None` when the server replicates from no one.
    pub fn replica_status(&self) -> Result<Option<ReplicaStatus>, Failure> {
        let flavor = self.flavor()?;
        let rows = self.query("reading the replica status", &flavor.show_replica_status())?;
        Ok(ReplicaStatus::parse(&rows))
    }

    /// The replica state, or a failure saying the server replicates from no one.
    pub fn require_replica(&self, then: &str) -> Result<ReplicaStatus, Failure> {
        self.replica_status()?.ok_or_else(|| {
            Failure::permanent(format!(
                "replica `{}` is not replicating from anyone, so it cannot {then}: run point-replica first",
                self.name
            ))
        })
    }

    /// A failure about this server that is not a SQL error.
    pub fn fail(&self, message: impl std::fmt::Display) -> Failure {
        Failure::permanent(format!("server `{}`: {message}", self.name))
    }

    fn failure(&self, purpose: &str, e: &SqlError) -> Failure {
        let code = e.code.map(|c| format!(" (error {c})")).unwrap_or_default();
        let hint = hint(e.code, &e.message);
        Failure {
            message: format!(
                "{purpose} on `{}` failed: {}{code}{hint}",
                self.name, e.message
            ),
            retryable: e.retryable,
        }
    }
}

/// What to do about the errors an operator meets most.
fn hint(code: Option<u16>, message: &str) -> &'static str {
    match code {
        Some(1045) => ": check the user and password_secret of this connection in medic.toml",
        Some(1044 | 1142 | 1227 | 1370) => {
            ": the connection's user lacks a privilege this action needs (see plans/mysql/README.md)"
        }
        Some(1290) => {
            ": the server is read-only for this user; for a restore run set-read-only with super: false first"
        }
        Some(1049) => ": the database does not exist on this server",
        Some(1146) => ": the table does not exist on this server",
        Some(2002 | 2003 | 2005 | 2006 | 2013) => ": is the server up and reachable from medic?",
        Some(1200 | 1617) => ": the server is not configured as a replica: run point-replica first",
        Some(1198 | 1904) => ": stop the replica first (stop-replica)",
        Some(1947 | 1948) => {
            ": its own binlog holds newer GTIDs; for a replica rebuilt from a backup pass reset_binlog: true"
        }
        _ if message.contains("not granted") => ": add the connection to the plan's grants.sql",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_connection_purpose_and_what_to_do() {
        let s = Server::new("replica");
        let f = s.failure(
            "reading the replica status",
            &SqlError {
                message: "Access denied for user 'medic'@'localhost'".into(),
                code: Some(1045),
                retryable: false,
            },
        );
        assert!(!f.retryable);
        assert!(
            f.message
                .starts_with("reading the replica status on `replica` failed"),
            "{}",
            f.message
        );
        assert!(f.message.contains("password_secret"), "{}", f.message);
        let f = s.failure(
            "x",
            &SqlError {
                message: "connection refused".into(),
                code: None,
                retryable: true,
            },
        );
        assert!(f.retryable);
    }

    #[test]
    fn outside_the_guest_queries_fail_clearly() {
        let f = Server::new("primary").flavor().unwrap_err();
        assert!(
            f.message.contains("only inside the wasm guest"),
            "{}",
            f.message
        );
    }
}
