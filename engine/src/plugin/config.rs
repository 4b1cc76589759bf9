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
//!
//! # The operations loop (`ops`): where notifications go and which alerts start
//! # which plans. Plans name channels; only this file says where they are.
//! [notify]
//! max_attempts = 8                 # deliveries per notification before giving up
//! retry_initial = "1s"             # first retry delay, doubled up to retry_max
//! retry_max = "5m"
//!
//! [notify.channels.oncall]
//! url = "https://hooks.slack.com/services/T0/B0/X"
//! format = "slack"                 # slack ({"text": ...}) | json | template
//!
//! [[alerts.rules]]
//! name = "replica-broken"
//! match = { alertname = "MySQLReplicationStopped" }
//! plan = "mysql-replica-resync"    # a registered plan: NAME or NAME@VERSION
//! params = { replica = "${{ labels.instance }}" }
//! on_resolved = "annotate"         # cancel | annotate | ignore
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
    /// Notification channels and delivery retries (`ops`).
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Alert rules: which alert starts which plan (`POST /v1/hooks/...`).
    #[serde(default)]
    pub alerts: AlertsConfig,
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

/// `[notify]`: where the channels plans name are, and how deliveries are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    /// Deliveries of one notification before it is given up (default 8).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The delay before the first retry, doubled each time (default 1s).
    #[serde(default = "default_initial", with = "humantime_serde_compat")]
    pub retry_initial: std::time::Duration,
    /// The longest delay between retries (default 5m).
    #[serde(default = "default_max", with = "humantime_serde_compat")]
    pub retry_max: std::time::Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            channels: BTreeMap::new(),
            max_attempts: default_attempts(),
            retry_initial: default_initial(),
            retry_max: default_max(),
        }
    }
}

fn default_attempts() -> u32 {
    8
}
fn default_initial() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}
fn default_max() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

/// Durations as humans write them (`1s`, `5m`), read through humantime.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}`: {e}; expected e.g. `1s` or `5m`"
            ))
        })
    }
}

/// A notification channel: an HTTP(S) endpoint and the payload it takes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The URL each notification is POSTed to.
    pub url: String,
    #[serde(default)]
    pub format: ChannelFormat,
    /// For `format = "template"`: a minijinja template over the notification's JSON
    /// fields (`event`, `run`, `plan`, `step`, `status`, `severity`, `message`,
    /// `at`) that renders the JSON body, e.g. a DingTalk markdown message.
    pub template: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelFormat {
    /// `{"text": MESSAGE}`: Slack incoming webhooks and the many that copy them.
    #[default]
    Slack,
    /// The notification's JSON as is.
    Json,
    /// The channel's `template`, rendered.
    Template,
}

/// `[alerts]`: rules mapping alerts to plans.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub rules: Vec<AlertRule>,
}

/// One rule: an alert whose labels include all of `match` starts `plan`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    /// Label name -> the value it must have (all must hold).
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    /// A registered plan: `NAME` (its latest version) or `NAME@VERSION`.
    pub plan: String,
    /// The run's params; strings may hold `${{ labels.X }}`, `${{ annotations.X }}`
    /// templates.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub on_resolved: OnResolved,
}

/// What a resolved alert does to the run it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnResolved {
    /// Cancel the run if it is still going (completed steps are undone).
    Cancel,
    /// Record the resolution with the run (its report shows it).
    #[default]
    Annotate,
    /// Do nothing.
    Ignore,
}

impl AlertRule {
    /// Whether `labels` carry every label of `match`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
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
        check_ops(&config)?;
        Ok(config)
    }
}

/// The `[notify]` and `[alerts]` sections: every error names the table and field.
fn check_ops(config: &OperatorConfig) -> Result<(), String> {
    let n = &config.notify;
    if n.max_attempts == 0 {
        return Err("[notify] max_attempts = 0: expected at least 1".into());
    }
    if n.retry_initial > n.retry_max {
        return Err(format!(
            "[notify] retry_initial ({}) is longer than retry_max ({})",
            humantime::format_duration(n.retry_initial),
            humantime::format_duration(n.retry_max)
        ));
    }
    for (name, c) in &n.channels {
        if !super::valid_name(name) {
            return Err(format!(
                "[notify.channels.{name}]: a channel name may hold letters, digits, `-` and `_` only"
            ));
        }
        if !(c.url.starts_with("http://") || c.url.starts_with("https://"))
            || c.url.parse::<http::Uri>().is_err()
        {
            return Err(format!(
                "[notify.channels.{name}] url = `{}`: expected an http:// or https:// URL",
                c.url
            ));
        }
        match (c.format, &c.template) {
            (ChannelFormat::Template, None) => {
                return Err(format!(
                    "[notify.channels.{name}] format = \"template\" needs `template`, a minijinja template that renders the JSON body"
                ));
            }
            (ChannelFormat::Template, Some(t)) => {
                minijinja::Environment::new()
                    .template_from_str(t)
                    .map_err(|e| format!("[notify.channels.{name}] template: {e}"))?;
            }
            (_, Some(_)) => {
                return Err(format!(
                    "[notify.channels.{name}] has a `template` but format is not \"template\": set format = \"template\" or remove it"
                ));
            }
            (_, None) => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in config.alerts.rules.iter().enumerate() {
        let at = format!("[[alerts.rules]] #{} (`{}`)", i + 1, r.name);
        if !super::valid_name(&r.name) {
            return Err(format!("{at} name: letters, digits, `-` and `_` only"));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(format!(
                "{at} name: another rule has this name; names must be unique"
            ));
        }
        if r.matches.is_empty() {
            return Err(format!(
                "{at} match: empty, so it would match every alert; name at least one label, e.g. match = {{ alertname = \"X\" }}"
            ));
        }
        crate::schedule::parse_plan_ref(&r.plan).map_err(|e| format!("{at} plan: {e}"))?;
    }
    Ok(())
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
