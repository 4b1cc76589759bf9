//! Which server this is (MariaDB or MySQL, and its version) and the statements that
//! differ between them. Read from `SELECT VERSION(), @@version_comment` once per call.

/// The server family, as the replication syntax and GTID format follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// GTIDs `domain-server-seq`; `CHANGE MASTER ... MASTER_USE_GTID`.
    MariaDb,
    /// GTID sets `uuid:1-5`; `CHANGE REPLICATION SOURCE ... SOURCE_AUTO_POSITION`.
    MySql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    pub kind: Kind,
    /// (major, minor, patch) from `VERSION()`.
    pub version: (u32, u32, u32),
}

impl Flavor {
    /// From `VERSION()` (`10.11.6-MariaDB-0+deb12u1-log`, `8.0.36`, or on old MariaDB
    /// builds `5.5.5-10.3.39-MariaDB`) and `@@version_comment` (`MySQL Community
    /// Server - GPL`, `mariadb.org binary distribution`, `Debian 12`).
    pub fn detect(version: &str, comment: &str) -> Flavor {
        let lower = format!("{version} {comment}").to_ascii_lowercase();
        let kind = if lower.contains("mariadb") {
            Kind::MariaDb
        } else {
            Kind::MySql
        };
        // The 5.5.5- prefix is MariaDB's replication-compatibility mask.
        let v = version.strip_prefix("5.5.5-").unwrap_or(version);
        let mut nums = v
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let version = (
            nums.next().unwrap_or(0),
            nums.next().unwrap_or(0),
            nums.next().unwrap_or(0),
        );
        Flavor { kind, version }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::MariaDb => "mariadb",
            Kind::MySql => "mysql",
        }
    }

    fn at_least(&self, v: (u32, u32, u32)) -> bool {
        self.version >= v
    }

    /// MySQL 8.0.22 renamed SLAVE to REPLICA (8.4 dropped the old words); MariaDB
    /// keeps SLAVE everywhere, which every version accepts.
    fn replica_word(&self) -> &'static str {
        match self.kind {
            Kind::MySql if self.at_least((8, 0, 22)) => "REPLICA",
            _ => "SLAVE",
        }
    }

    pub fn show_replica_status(&self) -> String {
        format!("SHOW {} STATUS", self.replica_word())
    }

    pub fn stop_replica(&self) -> String {
        format!("STOP {}", self.replica_word())
    }

    pub fn start_replica(&self) -> String {
        format!("START {}", self.replica_word())
    }

    pub fn reset_replica(&self, all: bool) -> String {
        let all = if all { " ALL" } else { "" };
        format!("RESET {}{all}", self.replica_word())
    }

    /// `SHOW BINARY LOG STATUS` replaced `SHOW MASTER STATUS` in MySQL 8.2.
    pub fn show_binlog_status(&self) -> &'static str {
        match self.kind {
            Kind::MySql if self.at_least((8, 2, 0)) => "SHOW BINARY LOG STATUS",
            _ => "SHOW MASTER STATUS",
        }
    }

    /// Discards the server's own binary logs and GTID history (8.4 renamed it).
    pub fn reset_binlog(&self) -> &'static str {
        match self.kind {
            Kind::MySql if self.at_least((8, 4, 0)) => "RESET BINARY LOGS AND GTIDS",
            _ => "RESET MASTER",
        }
    }

    /// The statement pointing a replica at `host:port` by GTID; every value is
    /// rendered as an escaped literal (replication options take no placeholders).
    pub fn change_source(&self, host: &str, port: u16, user: &str, password: &str) -> String {
        use crate::render::quote_str;
        let (h, p, u, w) = (quote_str(host), port, quote_str(user), quote_str(password));
        match self.kind {
            Kind::MariaDb => format!(
                "CHANGE MASTER TO MASTER_HOST={h}, MASTER_PORT={p}, MASTER_USER={u}, \
                 MASTER_PASSWORD={w}, MASTER_USE_GTID=slave_pos"
            ),
            Kind::MySql if self.at_least((8, 0, 23)) => format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST={h}, SOURCE_PORT={p}, \
                 SOURCE_USER={u}, SOURCE_PASSWORD={w}, SOURCE_AUTO_POSITION=1, \
                 GET_SOURCE_PUBLIC_KEY=1"
            ),
            Kind::MySql => format!(
                "CHANGE MASTER TO MASTER_HOST={h}, MASTER_PORT={p}, MASTER_USER={u}, \
                 MASTER_PASSWORD={w}, MASTER_AUTO_POSITION=1"
            ),
        }
    }

    /// The expression waiting up to `?` seconds for GTID position `?`; it gives 0 when
    /// reached (MariaDB: -1 on timeout; MySQL: 1).
    pub fn wait_for_gtid(&self) -> &'static str {
        match self.kind {
            Kind::MariaDb => "SELECT MASTER_GTID_WAIT(?, ?)",
            Kind::MySql => "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)",
        }
    }

    /// What this server has applied: MariaDB's `gtid_current_pos` (its own binlog and
    /// what it replicated), MySQL's `gtid_executed`.
    pub fn executed_gtid(&self) -> &'static str {
        match self.kind {
            Kind::MariaDb => "SELECT @@global.gtid_current_pos",
            Kind::MySql => "SELECT @@global.gtid_executed",
        }
    }

    /// What this server has written to its binlog (a primary's position).
    pub fn binlog_gtid(&self) -> &'static str {
        match self.kind {
            Kind::MariaDb => "SELECT @@global.gtid_binlog_pos",
            Kind::MySql => "SELECT @@global.gtid_executed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_mariadb_is_told_from_version_or_comment() {
        let f = Flavor::detect("10.11.6-MariaDB-0+deb12u1-log", "Debian 12");
        assert_eq!((f.kind, f.version), (Kind::MariaDb, (10, 11, 6)));
        let f = Flavor::detect("5.5.5-10.3.39-MariaDB", "");
        assert_eq!((f.kind, f.version), (Kind::MariaDb, (10, 3, 39)));
        let f = Flavor::detect("11.4.2", "mariadb.org binary distribution");
        assert_eq!(f.kind, Kind::MariaDb);
        let f = Flavor::detect("8.0.36", "MySQL Community Server - GPL");
        assert_eq!((f.kind, f.version), (Kind::MySql, (8, 0, 36)));
    }

    #[test]
    fn dialect_replication_words_follow_the_server() {
        let maria = Flavor::detect("10.11.6-MariaDB", "");
        let my80 = Flavor::detect("8.0.36", "MySQL");
        let my57 = Flavor::detect("5.7.44-log", "MySQL Community Server (GPL)");
        let my84 = Flavor::detect("8.4.0", "MySQL");
        assert_eq!(maria.stop_replica(), "STOP SLAVE");
        assert_eq!(my80.stop_replica(), "STOP REPLICA");
        assert_eq!(my57.show_replica_status(), "SHOW SLAVE STATUS");
        assert_eq!(my80.reset_replica(true), "RESET REPLICA ALL");
        assert_eq!(my84.show_binlog_status(), "SHOW BINARY LOG STATUS");
        assert_eq!(my80.show_binlog_status(), "SHOW MASTER STATUS");
        assert_eq!(my84.reset_binlog(), "RESET BINARY LOGS AND GTIDS");
        assert_eq!(maria.reset_binlog(), "RESET MASTER");
        assert!(maria.wait_for_gtid().contains("MASTER_GTID_WAIT"));
        assert!(my80.wait_for_gtid().contains("WAIT_FOR_EXECUTED_GTID_SET"));
    }

    #[test]
    fn dialect_change_source_uses_gtid_and_escapes_every_value() {
        let maria = Flavor::detect("10.11.6-MariaDB", "");
        let s = maria.change_source("10.0.0.1", 3306, "repl", "pa'ss");
        assert!(s.contains("MASTER_USE_GTID=slave_pos"), "{s}");
        assert!(s.contains("MASTER_PASSWORD='pa''ss'"), "{s}");
        let my = Flavor::detect("8.0.36", "MySQL");
        let s = my.change_source("db1", 3307, "repl", "x");
        assert!(
            s.starts_with("CHANGE REPLICATION SOURCE TO SOURCE_HOST='db1'"),
            "{s}"
        );
        assert!(s.contains("SOURCE_AUTO_POSITION=1"), "{s}");
        let old = Flavor::detect("8.0.20", "MySQL").change_source("h", 1, "u", "p");
        assert!(old.contains("MASTER_AUTO_POSITION=1"), "{old}");
    }
}
