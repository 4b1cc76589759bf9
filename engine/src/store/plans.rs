//! The plan registry: numbered versions (1, 2, 3, ...) of each plan name, each kept
//! with the text as the operator wrote it. The canonical JSON a run executes stays in
//! `plans`, keyed by hash, so a run of a registered version is stored like any other.

use rusqlite::{OptionalExtension, params};

use super::{Error, Result, Store, all, sql};
use crate::plan::Format;
use crate::run::Ms;

/// A plan to register under its name.
pub struct RegisterPlan<'a> {
    pub name: &'a str,
    pub hash: &'a str,
    /// The canonical JSON (what runs execute).
    pub canonical: &'a str,
    /// The text as submitted (what `GET .../versions/N` gives back).
    pub source: &'a str,
    pub format: Format,
    pub at: Ms,
    /// The schedules the plan declares (`metadata.schedules`): name and spec as JSON,
    /// its `plan` field being the plan's name; a new version points them at itself.
    pub schedules: Vec<(String, serde_json::Value)>,
}

/// The version a registration resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub version: u32,
    /// false when the text was identical to the latest version's, which is returned.
    pub created: bool,
    pub created_at: Ms,
}

/// A registered plan name, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanSummary {
    pub name: String,
    pub latest: u32,
    /// How many versions there are (versions are numbered 1..=latest).
    pub versions: u32,
    /// When the latest version was registered.
    pub updated_at: Ms,
}

/// One registered version of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVersion {
    pub name: String,
    pub version: u32,
    pub hash: String,
    pub source: String,
    pub format: Format,
    pub created_at: Ms,
}

fn format_str(f: Format) -> &'static str {
    match f {
        Format::Yaml => "yaml",
        Format::Json => "json",
    }
}

fn parse_format(s: &str) -> Result<Format> {
    match s {
        "yaml" => Ok(Format::Yaml),
        "json" => Ok(Format::Json),
        other => Err(Error::Corrupt {
            what: "plan format",
            detail: other.into(),
        }),
    }
}

impl Store {
    /// Registers `plan` as the next version of its name, unless its text is identical
    /// to the latest version's: then that version is returned with `created: false`.
    /// Versions are numbered in the writer thread, so concurrent registrations of one
    /// name get distinct, gap-free numbers.
    pub async fn register_plan(&self, plan: RegisterPlan<'_>) -> Result<Registered> {
        let (name, hash, canonical, source) = (
            plan.name.to_owned(),
            plan.hash.to_owned(),
            plan.canonical.to_owned(),
            plan.source.to_owned(),
        );
        let (format, at) = (format_str(plan.format), plan.at);
        let schedules = plan.schedules;
        self.writer
            .write(move |conn| {
                let latest: Option<(u32, String, Ms)> = conn
                    .query_row(
                        "SELECT version, source, created_at FROM plan_versions
                         WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                        [&name],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(sql("reading the latest version of the plan"))?;
                if let Some((version, latest_source, created_at)) = &latest
                    && *latest_source == source
                {
                    return Ok(Registered {
                        version: *version,
                        created: false,
                        created_at: *created_at,
                    });
                }
                let version = latest.map_or(1, |(v, _, _)| v + 1);
                conn.execute(
                    "INSERT OR IGNORE INTO plans (hash, name, source, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![hash, name, canonical, at],
                )
                .map_err(sql("storing the plan"))?;
                conn.execute(
                    "INSERT INTO plan_versions (name, version, hash, source, format, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![name, version, hash, source, format, at],
                )
                .map_err(sql("registering the plan version"))?;
                let declared: Vec<(String, serde_json::Value)> = schedules
                    .into_iter()
                    .map(|(schedule, mut spec)| {
                        spec["plan"] = serde_json::Value::String(format!("{name}@{version}"));
                        (schedule, spec)
                    })
                    .collect();
                super::schedules::sync_declared(conn, &name, &declared, at)?;
                Ok(Registered {
                    version,
                    created: true,
                    created_at: at,
                })
            })
            .await
    }

    /// Every registered plan name, by name.
    pub async fn plans(&self) -> Result<Vec<PlanSummary>> {
        self.read(|conn| {
            all(
                conn,
                "listing registered plans",
                "SELECT name, MAX(version), COUNT(*), MAX(created_at) FROM plan_versions
                 GROUP BY name ORDER BY name",
                [],
                |r| {
                    Ok(PlanSummary {
                        name: r.get(0)?,
                        latest: r.get(1)?,
                        versions: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
        })
        .await
    }

    /// Every version of the plan `name`, oldest first (their sources left out).
    pub async fn plan_versions(&self, name: &str) -> Result<Vec<PlanVersion>> {
        let name = name.to_owned();
        self.read(move |conn| {
            let rows = all(
                conn,
                "listing the plan's versions",
                "SELECT version, hash, format, created_at FROM plan_versions
                 WHERE name = ?1 ORDER BY version",
                [&name],
                |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Ms>(3)?,
                    ))
                },
            )?;
            if rows.is_empty() {
                return Err(unknown(&name));
            }
            rows.into_iter()
                .map(|(version, hash, format, created_at)| {
                    Ok(PlanVersion {
                        name: name.clone(),
                        version,
                        hash,
                        source: String::new(),
                        format: parse_format(&format)?,
                        created_at,
                    })
                })
                .collect()
        })
        .await
    }

    /// Version `version` of the plan `name` with its source (`None`: the latest).
    pub async fn plan_version(&self, name: &str, version: Option<u32>) -> Result<PlanVersion> {
        let name = name.to_owned();
        self.read(move |conn| {
            let row = conn
                .query_row(
                    "SELECT version, hash, source, format, created_at FROM plan_versions
                     WHERE name = ?1 AND (?2 IS NULL OR version = ?2)
                     ORDER BY version DESC LIMIT 1",
                    params![name, version],
                    |r| {
                        Ok((
                            r.get::<_, u32>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Ms>(4)?,
                        ))
                    },
                )
                .optional()
                .map_err(sql("reading the plan version"))?;
            let Some((version, hash, source, format, created_at)) = row else {
                let latest: Option<u32> = conn
                    .query_row(
                        "SELECT MAX(version) FROM plan_versions WHERE name = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .map_err(sql("reading the plan's latest version"))?;
                return Err(match (latest, version) {
                    (Some(1), Some(v)) => Error::PlanNotFound(format!(
                        "plan `{name}` has no version {v}; its only version is 1"
                    )),
                    (Some(latest), Some(v)) => Error::PlanNotFound(format!(
                        "plan `{name}` has no version {v}; its versions are 1 to {latest}"
                    )),
                    _ => unknown(&name),
                });
            };
            Ok(PlanVersion {
                name,
                version,
                hash,
                source,
                format: parse_format(&format)?,
                created_at,
            })
        })
        .await
    }
}

fn unknown(name: &str) -> Error {
    Error::PlanNotFound(format!("no plan named `{name}` is registered"))
}
