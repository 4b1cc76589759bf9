//! The on-disk cache of compiled components: a component compiled once is kept as
//! wasmtime's serialized artifact, named by the sha256 of the wasm and the engine's
//! compatibility, so the next process loads it in milliseconds instead of compiling.
//!
//! Only medic writes this dir (created 0700, every file written to a temporary name
//! and renamed); anything unreadable or rejected there is compiled again and
//! overwritten, never an error of the call.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The wasmtime this build links (the root Cargo.toml pins it with `=`). Part of the
/// cache key so an upgrade starts a fresh set of files instead of rejecting old ones.
const WASMTIME_VERSION: &str = "48.0.8";

/// Where a component came from, for logs, tests and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Compiled now; no cache dir is configured.
    Compiled,
    /// Compiled now and written to the cache.
    CompiledAndCached,
    /// Loaded from the cache.
    Cached,
    /// The cache held a file that did not load (corrupt, foreign, another engine);
    /// compiled now and the file overwritten.
    Recompiled,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Compiled => "compiled",
            Source::CompiledAndCached => "compiled, cached",
            Source::Cached => "cache hit",
            Source::Recompiled => "cache file rejected, recompiled",
        }
    }
}

/// The cache dir and this engine's part of the file names.
#[derive(Clone)]
pub(super) struct Cache {
    dir: PathBuf,
    compat: String,
}

impl Cache {
    pub(super) fn new(dir: PathBuf, engine: &Engine) -> Cache {
        // DefaultHasher::new() has fixed keys: the same engine config gives the same
        // value in every process of this build. Another build may give another value,
        // which only costs a compile.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Cache {
            dir,
            compat: format!("wasmtime-{WASMTIME_VERSION}-{:016x}", h.finish()),
        }
    }

    /// Whether the cache dir is still only medic's (no group or other write): a dir
    /// someone else can write is not a place to load machine code from.
    fn private(&self) -> bool {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.permissions().mode() & 0o022 == 0 => true,
            Ok(m) => {
                tracing::warn!(dir = %self.dir.display(), mode = format!("{:o}", m.permissions().mode() & 0o777),
                    "the compiled-component cache dir is writable by others; not loading from it (chmod 700 it)");
                false
            }
            Err(_) => false,
        }
    }

    /// The kept copy of the wasm whose sha256 this is: a run pinned to a build that
    /// has since been replaced in the plugin dirs loads it from here.
    pub(super) fn wasm_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Keeps a copy of `bytes` (whose sha256 this is) unless one is kept already.
    pub(super) fn keep_wasm(&self, sha256: &str, bytes: &[u8]) {
        let path = self.wasm_path(sha256);
        if path.is_file() {
            return;
        }
        if let Err(e) = write_atomically(&self.dir, &path, bytes) {
            tracing::warn!(path = %path.display(), error = %e,
                "could not keep a copy of the plugin build; runs pinned to it cannot continue once it is replaced");
        }
    }

    /// The file of the component whose wasm has this sha256.
    pub(super) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.compat))
    }

    /// The compiled component for `bytes` (whose sha256 is `sha256`): from the cache
    /// if it holds a file that loads, else compiled and (best effort) written there.
    pub(super) fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, Source)> {
        let path = self.path(sha256);
        let mut source = Source::CompiledAndCached;
        if path.is_file() && self.private() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok((c, Source::Cached)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"),
                        "compiled-component cache file does not load; compiling the wasm again and replacing it");
                    source = Source::Recompiled;
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        match component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|art| write_atomically(&self.dir, &path, &art))
        {
            Ok(()) => {}
            Err(e) => {
                // The call does not need the cache; the next process compiles again.
                tracing::warn!(path = %path.display(), error = %e,
                    "could not write the compiled-component cache; check the dir's owner and space");
                source = Source::Compiled;
            }
        }
        Ok((component, source))
    }
}

/// Loads a compiled component that medic itself wrote into its cache dir.
///
/// The file is read into memory rather than mapped (`deserialize_file`): a mapped
/// file truncated in place by anyone would crash the process with SIGBUS; a copy
/// costs well under a millisecond.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    // SAFETY: `deserialize` trusts its input to be a wasmtime artifact, as arbitrary
    // bytes could be machine code. medic only reads files from its own cache dir,
    // created 0700 (and not loaded from if others can write it), written by this
    // module alone via a temporary file and a rename (never a half-written file),
    // with the wasm's sha256 in the name; wasmtime itself checks the header, its
    // version and the engine's compatibility and rejects anything else (which we
    // then compile over).
    unsafe { Component::deserialize(engine, &bytes) }
}

/// Writes `bytes` to `path` through a temporary file in `dir` (created 0700).
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
