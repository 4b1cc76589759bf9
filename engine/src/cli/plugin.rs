//! `medic plugin install | list | inspect | keygen | sign`: installing, listing and
//! inspecting plugins on this host's plugin dirs (or with `--server` through
//! `/v1/plugins`, see `remote`), and the publisher's side of signatures.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::Value;

use super::{Env, exit};
use crate::plugin::InstallOptions;

#[derive(Subcommand, Debug)]
pub(super) enum PluginCommand {
    /// Install a plugin component into the first plugin dir, after checking its
    /// signature against the trusted keys (--trusted-keys).
    Install {
        /// The component (a wasm32-wasip2 build of a medic plugin).
        file: PathBuf,
        /// Its minisign signature. Default: FILE.minisig beside it, if present.
        #[arg(long, value_name = "FILE.minisig")]
        signature: Option<PathBuf>,
        /// Install it even though it has no signature.
        #[arg(long)]
        allow_unsigned: bool,
        /// Replace a newer version, or another build of the same version.
        #[arg(long)]
        force: bool,
    },
    /// List the installed plugins: version, signer, actions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin: actions with effects, inverses and schemas, sha256, signer, and
    /// the capabilities it asks for.
    Inspect {
        #[arg(value_name = "NAME[@VERSION]")]
        plugin: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a signing key pair: NAME.pub (give it to operators, who put it in their
    /// trusted-keys dir) and NAME.key (keep it secret; not password-protected).
    Keygen {
        /// Directory to write the two files into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Base name of the files.
        #[arg(long, default_value = "medic-plugin")]
        name: String,
    },
    /// Sign a plugin component: writes FILE.minisig beside it (minisign format).
    Sign {
        file: PathBuf,
        /// The secret key file (`medic plugin keygen`, or `minisign -G -W`).
        #[arg(long, value_name = "KEY")]
        secret_key: PathBuf,
        /// Where to write the signature. Default: FILE.minisig.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `FILE.minisig`, where minisign and `medic plugin sign` put a file's signature.
pub(super) fn default_signature(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// The component and its signature (the text of the `.minisig` file and its path)
/// as `install` reads them, locally or before sending them to a server.
pub(super) struct Offered {
    pub bytes: Vec<u8>,
    pub signature: Option<(String, PathBuf)>,
}

pub(super) fn read_offered(file: &Path, signature: Option<&Path>) -> Result<Offered> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("reading the plugin component {}", file.display()))?;
    let sig_path = match signature {
        Some(p) => Some(p.to_path_buf()),
        None => Some(default_signature(file)).filter(|p| p.is_file()),
    };
    let signature = match sig_path {
        Some(p) => Some((
            std::fs::read_to_string(&p)
                .with_context(|| format!("reading the signature {}", p.display()))?,
            p,
        )),
        None => None,
    };
    Ok(Offered { bytes, signature })
}

/// Splits `NAME[@VERSION]`.
pub(super) fn plugin_ref(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    }
}

/// Fails unless `doc` (a plugin's JSON) has a version `wanted` matches (a semver
/// requirement, as plans give it: `0.1` matches 0.1.3).
pub(super) fn check_version(doc: &Value, name: &str, wanted: Option<&str>) -> Result<()> {
    let Some(wanted) = wanted else { return Ok(()) };
    let found = doc["version"].as_str().unwrap_or("?");
    let req = semver::VersionReq::parse(wanted).with_context(|| {
        format!(
            "`{name}@{wanted}`: expected a semver version or requirement after @, e.g. {name}@0.1"
        )
    })?;
    match semver::Version::parse(found) {
        Ok(v) if req.matches(&v) => Ok(()),
        _ => bail!(
            "plugin `{name}` is installed as version {found}, which does not match {wanted}; \
             `medic plugin inspect {name}` shows the installed one"
        ),
    }
}

pub(super) async fn plugin(env: &Env, command: PluginCommand) -> Result<u8> {
    match command {
        PluginCommand::Install {
            file,
            signature,
            allow_unsigned,
            force,
        } => {
            let offered = read_offered(&file, signature.as_deref())?;
            let host = env.host()?;
            let opts = InstallOptions {
                force,
                signature_label: match &offered.signature {
                    Some((_, p)) => p.display().to_string(),
                    None => format!(
                        "--signature FILE, or {} beside it",
                        default_signature(&file).display()
                    ),
                },
                signature: offered.signature.map(|(text, _)| text),
                allow_unsigned,
            };
            let done = host
                .install(offered.bytes, opts)
                .await
                .with_context(|| format!("installing {}", file.display()))?;
            let m = &done.manifest;
            print_installed(
                &m.name,
                &m.version,
                done.outcome.as_str(),
                done.previous.as_deref(),
                done.signer.as_deref(),
                &done.path.display().to_string(),
            );
            Ok(exit::SUCCEEDED)
        }
        PluginCommand::List { json } => {
            let host = env.host()?;
            let list = crate::api::plugin_list_json(host.installed().await);
            print_list(&list, json)
        }
        PluginCommand::Inspect { plugin, json } => {
            let (name, version) = plugin_ref(&plugin);
            let host = env.host()?;
            let inspected = host.inspect(name).await?;
            let doc = crate::api::plugin_json(&inspected);
            check_version(&doc, name, version)?;
            print_doc(&doc, json)
        }
        PluginCommand::Keygen { dir, name } => {
            let (public, secret, id) = crate::plugin::keygen().map_err(anyhow::Error::msg)?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let pub_path = dir.join(format!("{name}.pub"));
            let key_path = dir.join(format!("{name}.key"));
            for p in [&pub_path, &key_path] {
                if p.exists() {
                    bail!(
                        "{} exists; not overwriting a key (pick another --name or --dir)",
                        p.display()
                    );
                }
            }
            write_private(&key_path, secret.as_bytes())?;
            std::fs::write(&pub_path, public)
                .with_context(|| format!("writing {}", pub_path.display()))?;
            println!("key {id}");
            println!(
                "  public key: {}  (operators put it in their trusted-keys dir)",
                pub_path.display()
            );
            println!(
                "  secret key: {}  (keep it private: it is not password-protected)",
                key_path.display()
            );
            println!(
                "  sign with: medic plugin sign FILE.wasm --secret-key {}",
                key_path.display()
            );
            Ok(exit::SUCCEEDED)
        }
        PluginCommand::Sign {
            file,
            secret_key,
            out,
        } => {
            let wasm = std::fs::read(&file)
                .with_context(|| format!("reading the plugin component {}", file.display()))?;
            let secret = std::fs::read_to_string(&secret_key)
                .with_context(|| format!("reading the secret key {}", secret_key.display()))?;
            let comment = format!(
                "file:{}\tsha256:{}",
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                {
                    use sha2::Digest;
                    sha2::Sha256::digest(&wasm)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                }
            );
            let (sig, id) = crate::plugin::sign(&wasm, &secret, &comment)
                .map_err(|e| anyhow::anyhow!("{}: {e}", secret_key.display()))?;
            let out = out.unwrap_or_else(|| default_signature(&file));
            std::fs::write(&out, sig).with_context(|| format!("writing {}", out.display()))?;
            println!("{} signed with key {id}: {}", file.display(), out.display());
            Ok(exit::SUCCEEDED)
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

pub(super) fn print_installed(
    name: &str,
    version: &str,
    outcome: &str,
    previous: Option<&str>,
    signer: Option<&str>,
    path: &str,
) {
    let previous = previous.map(|p| format!(" (was {p})")).unwrap_or_default();
    let signer = match signer {
        Some(id) => format!("signed by {id}"),
        None => "unsigned".to_string(),
    };
    println!("plugin `{name}` {version} {outcome}{previous}, {signer}: {path}");
}

/// Prints the JSON of `GET /v1/plugins` as a table (or as it is with --json).
pub(super) fn print_list(list: &Value, json: bool) -> Result<u8> {
    let rows = list["plugins"].as_array().cloned().unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(exit::SUCCEEDED);
    }
    if rows.is_empty() {
        println!("no plugins installed");
        return Ok(exit::SUCCEEDED);
    }
    println!(
        "{:<20} {:<10} {:<28} ACTIONS",
        "NAME", "VERSION", "SIGNATURE"
    );
    for r in rows {
        let actions = r["actions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let signature = match r["signed_by"].as_str() {
            Some(id) => format!("signed by {id}"),
            None => r["signature"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(28)
                .collect(),
        };
        match r["error"].as_str() {
            Some(e) => println!(
                "{:<20} {:<10} {:<28} does not load: {e}",
                r["name"].as_str().unwrap_or("?"),
                "-",
                signature
            ),
            None => println!(
                "{:<20} {:<10} {:<28} {actions}",
                r["name"].as_str().unwrap_or("?"),
                r["version"].as_str().unwrap_or("?"),
                signature
            ),
        }
    }
    Ok(exit::SUCCEEDED)
}

/// Prints the JSON of `GET /v1/plugins/{name}` for a person (or as it is).
pub(super) fn print_doc(doc: &Value, json: bool) -> Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(doc)?);
        return Ok(exit::SUCCEEDED);
    }
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    println!(
        "plugin `{}` {}: {}",
        s(&doc["name"]),
        s(&doc["version"]),
        s(&doc["description"])
    );
    println!("  sha256:       {}", s(&doc["sha256"]));
    println!("  file:         {}", s(&doc["path"]));
    println!("  signature:    {}", s(&doc["signature"]));
    let caps = doc["capabilities"].as_array().cloned().unwrap_or_default();
    if caps.is_empty() {
        println!("  capabilities: none beyond WASI basics (streams, clocks, random, stdio)");
    } else {
        println!("  capabilities (from its imports; plans still grant each use):");
        for c in caps {
            println!("    {:<18} {}", s(&c["capability"]), s(&c["interface"]));
        }
    }
    println!("  actions:");
    for a in doc["actions"].as_array().cloned().unwrap_or_default() {
        println!(
            "    {} ({}): {}",
            s(&a["name"]),
            s(&a["effect"]),
            s(&a["description"])
        );
        if let Some(inv) = a["inverse"].as_str() {
            println!("      inverse: {inv}");
        }
        println!("      params:  {}", a["params_schema"]);
        println!("      output:  {}", a["output_schema"]);
    }
    Ok(exit::SUCCEEDED)
}
