//! The installed plugins: what the plugin dirs hold (as calls would find it), one
//! plugin in detail (signer, capabilities), and installing a component into the
//! first dir so the running host uses it at once.
//!
//! Install policy, for operators: the signature is checked first (see `trust`: a
//! signed component must verify with a trusted key, an unsigned one needs
//! `allow_unsigned`); the same bytes again change nothing; a newer version replaces
//! the installed one; an older version, or different bytes under the same version,
//! is refused unless forced (a downgrade should be a decision, and a version should
//! name one build). The signature is stored beside the wasm as `NAME.wasm.minisig`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::cache::Source;
use super::capability::Capability;
use super::host::{Host, hex};
use super::trust::{Signer, TrustedKeys};
use super::{Error, Manifest, valid_name};

/// What an install is asked to accept.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Replace a newer version or another build of the same version.
    pub force: bool,
    /// The minisign signature (the `.minisig` file's text), if the publisher signed it.
    pub signature: Option<String>,
    /// What to call the signature in errors (its file name, or the header it came in).
    pub signature_label: String,
    /// Install a component without a signature.
    pub allow_unsigned: bool,
}

/// One installed plugin in detail.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub manifest: Arc<Manifest>,
    pub path: PathBuf,
    pub signer: Signer,
    /// What it asks for, from its imports.
    pub capabilities: Vec<Capability>,
    /// Whether this process compiled it or loaded it from the compiled-component cache.
    pub source: Source,
}

/// The signature file kept beside an installed `NAME.wasm`.
fn signature_path(wasm: &Path) -> PathBuf {
    let mut name = wasm.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// A plugin file in the plugin dirs.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The file's stem, which must be the plugin's name.
    pub name: String,
    pub path: PathBuf,
    /// The manifest, or why the file does not load.
    pub manifest: Result<Arc<Manifest>, String>,
    /// Who signed it (checked against the trusted keys now).
    pub signer: Signer,
}

/// What an install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallOutcome {
    /// No plugin of that name was installed.
    Installed,
    /// The identical component was already installed; nothing was written.
    Unchanged,
    /// A newer version replaced the installed one.
    Upgraded,
    /// Forced: an older version, or another build of the same version, replaced the
    /// installed one (or the installed file did not load).
    Replaced,
}

impl InstallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallOutcome::Installed => "installed",
            InstallOutcome::Unchanged => "unchanged",
            InstallOutcome::Upgraded => "upgraded",
            InstallOutcome::Replaced => "replaced",
        }
    }
}

/// The result of [`Host::install`].
#[derive(Debug, Clone)]
pub struct Install {
    pub manifest: Arc<Manifest>,
    pub path: PathBuf,
    pub outcome: InstallOutcome,
    /// The version installed before, if one was and it loaded.
    pub previous: Option<String>,
    /// The key id that signed it; `None` for an allowed unsigned install.
    pub signer: Option<String>,
}

impl Host {
    /// Every plugin file in the plugin dirs, by name. For a name found in several
    /// dirs, the first dir's file is the one listed, as it is the one calls use.
    pub async fn installed(&self) -> Vec<Installed> {
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in &self.config.plugin_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let (Some(stem), Some("wasm")) = (
                    path.file_stem().and_then(|s| s.to_str()),
                    path.extension().and_then(|s| s.to_str()),
                ) else {
                    continue;
                };
                // Dot files are an install's temporary files.
                if stem.starts_with('.') || !path.is_file() {
                    continue;
                }
                found.entry(stem.to_owned()).or_insert(path);
            }
        }
        let mut out = Vec::with_capacity(found.len());
        for (name, path) in found {
            let manifest = if valid_name(&name) {
                self.loaded(&name)
                    .await
                    .map(|l| l.manifest.clone())
                    .map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "`{name}` is not a plugin name (ASCII letters, digits, `-` and `_`); \
                     medic never loads this file"
                ))
            };
            let signer = self.signer(&path).await;
            out.push(Installed {
                name,
                path,
                manifest,
                signer,
            });
        }
        out
    }

    /// The installed plugin `name`, whatever its version: manifest, signer and the
    /// capabilities it asks for.
    pub async fn inspect(&self, name: &str) -> Result<Inspected, Error> {
        let loaded = self.loaded(name).await?;
        let path = self.find(name)?;
        Ok(Inspected {
            manifest: loaded.manifest.clone(),
            signer: self.signer(&path).await,
            path,
            capabilities: loaded.capabilities.clone(),
            source: loaded.source,
        })
    }

    fn trusted_keys(&self) -> Result<TrustedKeys, Error> {
        match &self.config.trusted_keys {
            Some(dir) => TrustedKeys::load(dir),
            None => Ok(TrustedKeys::default()),
        }
    }

    /// Who signed the plugin file at `path`, by its stored signature and the keys
    /// trusted now.
    async fn signer(&self, path: &Path) -> Signer {
        let sig_path = signature_path(path);
        let Ok(signature) = std::fs::read_to_string(&sig_path) else {
            return Signer::Unsigned;
        };
        let keys = match self.trusted_keys() {
            Ok(k) => k,
            Err(e) => {
                return Signer::Unverified {
                    key_id: None,
                    reason: e.to_string(),
                };
            }
        };
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(wasm) => keys.signer(&wasm, Some(&signature), &sig_path.display().to_string()),
            Err(e) => Signer::Unverified {
                key_id: None,
                reason: format!("reading {}: {e}", path.display()),
            },
        })
        .await
        .unwrap_or_else(|e| Signer::Unverified {
            key_id: None,
            reason: e.to_string(),
        })
    }

    /// Applies the signature policy to `bytes`: the signer's key id, or `None` for an
    /// unsigned component the operator allowed.
    fn check_signature(
        &self,
        bytes: &[u8],
        opts: &InstallOptions,
    ) -> Result<Option<String>, Error> {
        match &opts.signature {
            Some(signature) => {
                let keys = self.trusted_keys()?;
                keys.verify(bytes, signature, &opts.signature_label)
                    .map(Some)
            }
            None if opts.allow_unsigned => Ok(None),
            None => Err(Error::Untrusted {
                message: format!(
                    "the plugin is unsigned, and unsigned plugins are installed only when \
                     asked for: give its signature ({}), or allow it explicitly \
                     (--allow-unsigned, or allow_unsigned=true over REST) if you trust where \
                     it came from",
                    opts.signature_label
                ),
            }),
        }
    }

    /// Installs the component `bytes` as `NAME.wasm` in the first plugin dir, NAME
    /// being the name its manifest gives. The component is compiled and its manifest
    /// read first, so nothing that does not load is ever written; the file is written
    /// to a temporary name and renamed, so no call ever sees half a file. Calls made
    /// from then on use the new plugin; calls in flight finish on the old one.
    pub async fn install(&self, bytes: Vec<u8>, opts: InstallOptions) -> Result<Install, Error> {
        let force = opts.force;
        let not_installable = |message: String| Error::NotInstallable { message };
        // The engine also reads WebAssembly text, whose parse errors would only confuse
        // someone who uploaded the wrong file.
        if !bytes.starts_with(b"\0asm") {
            return Err(not_installable(
                "the body is not a WebAssembly binary (it does not start with `\\0asm`); send \
                 the plugin's .wasm file, e.g. plugins/dist/NAME.wasm"
                    .to_string(),
            ));
        }
        let signer = self.check_signature(&bytes, &opts)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let loaded = match self
            .compile(bytes.clone(), "(uploaded)", "the uploaded component")
            .await
        {
            Ok(l) => l,
            Err(Error::Load { message, .. }) => return Err(not_installable(message)),
            Err(e) => return Err(not_installable(e.to_string())),
        };
        let manifest = loaded.manifest.clone();
        let name = manifest.name.clone();
        if !valid_name(&name) {
            return Err(not_installable(format!(
                "its manifest names it `{name}`, which cannot be a file name: a plugin name \
                 is ASCII letters, digits, `-` and `_`"
            )));
        }
        let offered = semver::Version::parse(&manifest.version).map_err(|e| {
            not_installable(format!(
                "its manifest gives version `{}`, which is not semver ({e}); plans ask for \
                 plugins by semver requirement",
                manifest.version
            ))
        })?;
        let Some(dir) = self.config.plugin_dirs.first() else {
            return Err(not_installable(
                "medic has no plugin dir to install into".to_string(),
            ));
        };

        let _one_at_a_time = self.installing.lock().await;
        let current = match self.find(&name) {
            Ok(_) => Some(self.loaded(&name).await.map(|l| l.manifest.clone())),
            Err(_) => None,
        };
        let (outcome, previous) = match &current {
            None => (InstallOutcome::Installed, None),
            // The installed file does not load: anything that does is better.
            Some(Err(_)) => (InstallOutcome::Replaced, None),
            Some(Ok(m)) if m.sha256 == sha256 => {
                let path = self.find(&name)?;
                // The same bytes, now with a signature: keep it.
                if let Some(signature) = &opts.signature {
                    let sig = signature_path(&path);
                    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                    let text = signature.clone();
                    write_file(&dir, &sig, text.as_bytes()).map_err(|source| Error::Write {
                        path: sig.display().to_string(),
                        source,
                    })?;
                }
                return Ok(Install {
                    manifest: m.clone(),
                    path,
                    outcome: InstallOutcome::Unchanged,
                    previous: None,
                    signer,
                });
            }
            Some(Ok(m)) => {
                // An installed version that is not semver cannot be matched by any
                // plan, so any semver version is an upgrade of it.
                let installed = semver::Version::parse(&m.version).ok();
                match installed {
                    Some(v) if v >= offered && !force => {
                        return Err(Error::NotNewer {
                            name,
                            installed: m.version.clone(),
                            offered: manifest.version.clone(),
                            what: if v == offered { "replace" } else { "downgrade" },
                        });
                    }
                    Some(v) if v >= offered => (InstallOutcome::Replaced, Some(m.version.clone())),
                    _ => (InstallOutcome::Upgraded, Some(m.version.clone())),
                }
            }
        };

        let dir = dir.clone();
        let file = name.clone();
        let signature = opts.signature.clone();
        let kept = bytes.clone();
        let path = tokio::task::spawn_blocking(move || {
            // The signature goes first: a crash between the two leaves the old wasm
            // beside a signature that does not verify (shown as such), never a new
            // wasm shown as signed by an old signature.
            let sig = signature_path(&dir.join(format!("{file}.wasm")));
            match &signature {
                Some(text) => write_file(&dir, &sig, text.as_bytes())?,
                None => match std::fs::remove_file(&sig) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
            }
            write_atomically(&dir, &file, &bytes)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| Error::Write {
            path: self.config.plugin_dirs[0]
                .join(format!("{name}.wasm"))
                .display()
                .to_string(),
            source,
        })?;
        let loaded = Arc::new(loaded);
        self.remember(&loaded, Some(&kept));
        let cell = Arc::new(OnceCell::new_with(Some(loaded)));
        self.plugins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), cell);
        tracing::info!(plugin = %name, version = %manifest.version, path = %path.display(),
            outcome = outcome.as_str(), signer = signer.as_deref().unwrap_or("unsigned"), "installed plugin");
        Ok(Install {
            manifest,
            path,
            outcome,
            previous,
            signer,
        })
    }
}

/// Writes `bytes` to `dir/NAME.wasm` through a temporary file in the same dir, synced
/// before the rename and the dir synced after, so a crash leaves the old file or the
/// new one, never a torn one.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{name}.wasm"));
    write_file(dir, &path, bytes).map(|()| path)
}

/// Writes `bytes` to `path` in `dir` the same way (temporary dot file, sync, rename,
/// sync of the dir).
fn write_file(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{:08x}.tmp", rand::random::<u32>()));
    let written = (|| {
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("new");
        let path = write_atomically(&target, "p", b"one").unwrap();
        assert_eq!(path, target.join("p.wasm"));
        write_atomically(&target, "p", b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p.wasm"]);
    }
}
