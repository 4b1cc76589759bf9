//! The operator's side of plugin capabilities, from medic's configuration file
//! (`--config FILE`, default `DATA_DIR/medic.toml` when it exists): where secrets
//! live, the SQL connections plugins may be granted by name, and the credentials the
//! host attaches to HTTP requests. Plans grant names; only this file says what a name
//! means, so a plan never carries an address's password.
//!
//! Documented for operators in docs/configuration.md.
//!
//! ```toml
//! # One file per secret, named after it (the Docker / Kubernetes secrets layout).
//! secrets_dir = "/etc/medic/secrets"
//!
//! [sql.primary]
//! address = "10.0.0.5:3306"
//! user = "medic"
//! password_secret = "mysql-medic"   # a secret's name, never the password itself
//! tls = "off"                      # off | required | verify
//!
//! [[http.credentials]]
//! origin = "https://ceph-mgr:8443"
//! header = "Authorization"
//! secret = "ceph-token"            # the header's value is this secret's contents
//!
//! [safety]                         # global blast-radius caps over all runs' targets
//! concurrent_targets = 10
//! targets_per_hour = 50
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plan::{Origin, origin};

/// The parsed configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Directory with one file per secret; a relative path is taken from the file's
    /// directory.
    pub secrets_dir: Option<PathBuf>,
    #[serde(default)]
    pub sql: BTreeMap<String, SqlConnection>,
    #[serde(default)]
    pub http: HttpConfig,
    /// Global blast-radius caps (issue 12), over the targets of all runs.
    #[serde(default)]
    pub safety: SafetyConfig,
}

/// `[safety]`: caps on the distinct targets (resolved lock names) of all runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Held at once by all unfinished runs.
    pub concurrent_targets: Option<u32>,
    /// Started on by all runs within the last hour.
    pub targets_per_hour: Option<u32>,
}

/// A MySQL-protocol server plugins may be granted by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConnection {
    /// `host:port`.
    pub address: String,
    pub user: String,
    /// Name of the secret holding the password; none for a passwordless account.
    pub password_secret: Option<String>,
    /// Default database, if any.
    pub database: Option<String>,
    #[serde(default)]
    pub tls: SqlTls,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlTls {
    /// Plain TCP.
    #[default]
    Off,
    /// TLS, without checking the server's certificate.
    Required,
    /// TLS, checking the certificate and host name against the Mozilla root store
    /// built into medic (webpki-roots).
    Verify,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default)]
    pub credentials: Vec<HttpCredential>,
}

/// A header the host adds to every request a plugin sends to `origin`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCredential {
    pub origin: String,
    pub header: String,
    /// Name of the secret whose contents become the header's value.
    pub secret: String,
}

impl HttpCredential {
    pub fn origin(&self) -> Origin {
        origin(&self.origin).expect("checked when the configuration was loaded")
    }
}

impl OperatorConfig {
    /// Reads and checks the file at `path`; every error names the file and the field.
    pub fn load(path: &Path) -> Result<OperatorConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the configuration {}: {e}", path.display()))?;
        let mut config = OperatorConfig::parse(&text)
            .map_err(|e| format!("in the configuration {}: {e}", path.display()))?;
        if let Some(dir) = &config.secrets_dir
            && dir.is_relative()
            && let Some(base) = path.parent()
        {
            config.secrets_dir = Some(base.join(dir));
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<OperatorConfig, String> {
        let config: OperatorConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        for (key, v) in [
            ("concurrent_targets", config.safety.concurrent_targets),
            ("targets_per_hour", config.safety.targets_per_hour),
        ] {
            if v == Some(0) {
                return Err(format!(
                    "[safety] {key} = 0 would refuse every run with locks: give 1 or more, or leave it out for no cap"
                ));
            }
        }
        for (name, c) in &config.sql {
            if !super::valid_name(name) {
                return Err(format!(
                    "[sql.{name}]: a connection name may hold letters, digits, `-` and `_` only"
                ));
            }
            if !c.address.contains(':') {
                return Err(format!(
                    "[sql.{name}] address = `{}`: expected host:port, e.g. 127.0.0.1:3306",
                    c.address
                ));
            }
        }
        for (i, c) in config.http.credentials.iter().enumerate() {
            origin(&c.origin)
                .map_err(|e| format!("[[http.credentials]] #{} origin: {e}", i + 1))?;
            if c.header.is_empty()
                || !c
                    .header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(format!(
                    "[[http.credentials]] #{} header = `{}`: expected a header name like Authorization",
                    i + 1,
                    c.header
                ));
            }
        }
        Ok(config)
    }
}

/// Reads the secret `name` from `dir` (one file per secret; a trailing newline is not
/// part of the value). The error never contains the value.
pub fn read_secret(dir: Option<&Path>, name: &str) -> Result<String, String> {
    let Some(dir) = dir else {
        return Err(format!(
            "secret `{name}` is not configured: medic has no secrets_dir (set it in medic.toml)"
        ));
    };
    if !super::valid_name(name) {
        return Err(format!(
            "`{name}` is not a secret name (letters, digits, `-` and `_` only)"
        ));
    }
    let path = dir.join(name);
    let value = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "secret `{name}` is not configured: reading {}: {e}",
            path.display()
        )
    })?;
    Ok(value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(&value)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_configuration_parses_and_bad_fields_are_named() {
        let c = OperatorConfig::parse(
            r#"
secrets_dir = "secrets"
[sql.primary]
address = "127.0.0.1:3306"
user = "root"
password_secret = "mysql-root"
[[http.credentials]]
origin = "http://127.0.0.1:2379"
header = "Authorization"
secret = "etcd-token"
"#,
        )
        .unwrap();
        assert_eq!(c.sql["primary"].tls, SqlTls::Off);
        assert_eq!(c.http.credentials[0].origin().port, 2379);

        let e = OperatorConfig::parse("[sql.p]\naddress = \"db\"\nuser = \"u\"\n").unwrap_err();
        assert!(
            e.contains("[sql.p] address") && e.contains("host:port"),
            "{e}"
        );
        let e =
            OperatorConfig::parse("[sql.p]\naddress = \"db:1\"\nuser = \"u\"\ntls = \"maybe\"\n")
                .unwrap_err();
        assert!(e.contains("tls"), "{e}");
        let e = OperatorConfig::parse(
            "[[http.credentials]]\norigin = \"x\"\nheader = \"A\"\nsecret = \"s\"\n",
        )
        .unwrap_err();
        assert!(e.contains("#1 origin"), "{e}");
        let e = OperatorConfig::parse("colour = 1\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn secrets_are_files_and_errors_never_hold_the_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        assert_eq!(read_secret(Some(dir.path()), "token").unwrap(), "s3cret");
        let e = read_secret(Some(dir.path()), "missing").unwrap_err();
        assert!(e.contains("`missing` is not configured"), "{e}");
        assert!(read_secret(Some(dir.path()), "../token").is_err());
        assert!(
            read_secret(None, "token")
                .unwrap_err()
                .contains("secrets_dir")
        );
    }
}
