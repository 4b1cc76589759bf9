//! Reading a replica's state out of `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`, whose
//! column names differ between MariaDB, MySQL before 8.0.22 and after.

use medic_sdk::{Value, json};

use crate::value::Rows;

/// One replication connection's state; `None` from `parse` means "not a replica".
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    pub source_host: String,
    pub source_port: u16,
    /// `Yes`, `No` or `Connecting`, as the server says.
    pub io_state: String,
    pub sql_running: bool,
    pub seconds_behind: Option<i64>,
    /// MariaDB `Using_Gtid` is `Slave_Pos`/`Current_Pos`; MySQL `Auto_Position` is 1.
    pub uses_gtid: bool,
    /// MariaDB `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`.
    pub retrieved_gtid: String,
    /// MySQL `Executed_Gtid_Set`; MariaDB reads `gtid_slave_pos` separately.
    pub executed_gtid: String,
    pub last_io_error: String,
    pub last_sql_error: String,
}

impl ReplicaStatus {
    pub fn parse(rows: &Rows) -> Option<ReplicaStatus> {
        if rows.rows.is_empty() {
            return None;
        }
        let text = |names: &[&str]| {
            rows.get(0, names)
                .and_then(|v| v.text())
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let using_gtid = text(&["Using_Gtid"]);
        let auto_position = text(&["Auto_Position"]);
        let status = ReplicaStatus {
            source_host: text(&["Master_Host", "Source_Host"]),
            source_port: rows
                .get(0, &["Master_Port", "Source_Port"])
                .and_then(|v| v.int())
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0),
            io_state: text(&["Slave_IO_Running", "Replica_IO_Running"]),
            sql_running: rows
                .get(0, &["Slave_SQL_Running", "Replica_SQL_Running"])
                .and_then(|v| v.flag())
                .unwrap_or(false),
            seconds_behind: rows
                .get(0, &["Seconds_Behind_Master", "Seconds_Behind_Source"])
                .and_then(|v| v.int()),
            uses_gtid: (!using_gtid.is_empty() && !using_gtid.eq_ignore_ascii_case("no"))
                || auto_position == "1",
            retrieved_gtid: crate::gtid::compact(&text(&["Gtid_IO_Pos", "Retrieved_Gtid_Set"])),
            executed_gtid: crate::gtid::compact(&text(&["Executed_Gtid_Set"])),
            last_io_error: text(&["Last_IO_Error"]),
            last_sql_error: text(&["Last_SQL_Error"]),
        };
        // MariaDB keeps an empty row after RESET SLAVE (without ALL) once the host is
        // cleared; a replica without a source is not replicating from anyone.
        if status.source_host.is_empty() {
            return None;
        }
        Some(status)
    }

    pub fn io_running(&self) -> bool {
        self.io_state.eq_ignore_ascii_case("yes")
    }

    /// The IO thread cannot log in to the source (wrong replication user or
    /// password): the server keeps retrying forever, and waiting will not fix it.
    /// MariaDB reports it as `Connecting` with an "Access denied" Last_IO_Error.
    pub fn io_login_refused(&self) -> bool {
        !self.io_running() && self.last_io_error.contains("Access denied")
    }

    /// Both threads stopped.
    pub fn stopped(&self) -> bool {
        !self.sql_running && self.io_state.eq_ignore_ascii_case("no")
    }

    /// The last errors, for messages; empty when there are none.
    pub fn errors(&self) -> String {
        let mut parts = Vec::new();
        if !self.last_io_error.is_empty() {
            parts.push(format!("IO thread: {}", self.last_io_error));
        }
        if !self.last_sql_error.is_empty() {
            parts.push(format!("SQL thread: {}", self.last_sql_error));
        }
        parts.join("; ")
    }

    pub fn to_json(&self) -> Value {
        json!({
            "replica": true,
            "source_host": self.source_host,
            "source_port": self.source_port,
            "io_running": self.io_state,
            "sql_running": self.sql_running,
            "seconds_behind": self.seconds_behind,
            "using_gtid": self.uses_gtid,
            "retrieved_gtid": self.retrieved_gtid,
            "last_io_error": self.last_io_error,
            "last_sql_error": self.last_sql_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Val;

    fn rows(pairs: &[(&str, Val)]) -> Rows {
        Rows {
            columns: pairs.iter().map(|(c, _)| c.to_string()).collect(),
            rows: vec![pairs.iter().map(|(_, v)| v.clone()).collect()],
            affected_rows: 0,
        }
    }

    fn t(s: &str) -> Val {
        Val::Text(s.into())
    }

    #[test]
    fn a_refused_replication_login_is_told_apart() {
        // What MariaDB 10.11 shows for a wrong MASTER_PASSWORD.
        let refused = ReplicaStatus::parse(&rows(&[
            ("Master_Host", t("127.0.0.1")),
            ("Slave_IO_Running", t("Connecting")),
            ("Slave_SQL_Running", t("Yes")),
            (
                "Last_IO_Error",
                t(
                    "error connecting to master 'repl@127.0.0.1:22375' - retry-time: 1  \
                   maximum-retries: 100000  message: Access denied for user 'repl'@'127.0.0.1' \
                   (using password: YES)",
                ),
            ),
        ]))
        .unwrap();
        assert!(refused.io_login_refused());
        let connecting = ReplicaStatus::parse(&rows(&[
            ("Master_Host", t("127.0.0.1")),
            ("Slave_IO_Running", t("Connecting")),
            (
                "Last_IO_Error",
                t("error connecting to master: Connection refused"),
            ),
        ]))
        .unwrap();
        assert!(!connecting.io_login_refused());
    }

    #[test]
    fn status_rows_of_mariadb_parse() {
        let s = ReplicaStatus::parse(&rows(&[
            ("Master_Host", t("127.0.0.1")),
            ("Master_Port", Val::Int(3307)),
            ("Slave_IO_Running", t("Connecting")),
            ("Slave_SQL_Running", t("Yes")),
            ("Seconds_Behind_Master", Val::Null),
            ("Last_IO_Error", t("error connecting to master")),
            ("Last_SQL_Error", t("")),
            ("Using_Gtid", t("Slave_Pos")),
            ("Gtid_IO_Pos", t("0-1-10")),
        ]))
        .unwrap();
        assert_eq!((s.source_host.as_str(), s.source_port), ("127.0.0.1", 3307));
        assert!(!s.io_running() && s.sql_running && !s.stopped());
        assert_eq!(s.seconds_behind, None);
        assert!(s.uses_gtid);
        assert_eq!(s.retrieved_gtid, "0-1-10");
        assert_eq!(s.errors(), "IO thread: error connecting to master");
    }

    #[test]
    fn status_rows_of_mysql_8_parse_from_bytes() {
        let b = |s: &str| Val::Bytes(s.as_bytes().to_vec());
        let s = ReplicaStatus::parse(&rows(&[
            ("Source_Host", b("db1")),
            ("Source_Port", b("3306")),
            ("Replica_IO_Running", b("No")),
            ("Replica_SQL_Running", b("No")),
            ("Seconds_Behind_Source", b("12")),
            ("Auto_Position", b("1")),
            ("Retrieved_Gtid_Set", b("")),
            (
                "Executed_Gtid_Set",
                b("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
            ),
        ]))
        .unwrap();
        assert!(s.stopped() && s.uses_gtid);
        assert_eq!(s.seconds_behind, Some(12));
        assert_eq!(s.source_port, 3306);
        assert!(s.executed_gtid.ends_with(":1-5"));
    }

    #[test]
    fn status_empty_result_or_cleared_host_is_not_a_replica() {
        assert_eq!(ReplicaStatus::parse(&Rows::default()), None);
        let cleared = rows(&[("Master_Host", t("")), ("Slave_IO_Running", t("No"))]);
        assert_eq!(ReplicaStatus::parse(&cleared), None);
        let no_gtid = rows(&[("Master_Host", t("h")), ("Using_Gtid", t("No"))]);
        assert!(!ReplicaStatus::parse(&no_gtid).unwrap().uses_gtid);
    }
}
