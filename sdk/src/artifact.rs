//! Run artifacts (the WIT `host.artifact-append`/`artifact-read`): named byte streams
//! a step writes (a backup listing, a diagnostic dump) and a later step of the same
//! run reads. [`Writer`] is a `std::io::Write`, [`Reader`] a `std::io::Read`.
//!
//! The first append of a call starts the artifact afresh, so a retried attempt never
//! extends a half-written one. Names: letters, digits, `.`, `-`, `_`.

use std::io;

use crate::Failure;

/// Appends `data` to the run's artifact `name`; returns its size afterwards.
pub fn append(name: &str, data: &[u8]) -> Result<u64, Failure> {
    #[cfg(target_arch = "wasm32")]
    return crate::guest::artifact_append(name, data).map_err(Failure::permanent);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = data;
        Err(no_host(name))
    }
}

/// Up to `len` bytes of the run's artifact `name` from `offset`; empty at the end.
pub fn read(name: &str, offset: u64, len: u32) -> Result<Vec<u8>, Failure> {
    #[cfg(target_arch = "wasm32")]
    return crate::guest::artifact_read(name, offset, len).map_err(Failure::permanent);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (offset, len);
        Err(no_host(name))
    }
}

/// The whole artifact `name`.
pub fn read_to_end(name: &str) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    io::Read::read_to_end(&mut Reader::new(name), &mut out)
        .map_err(|e| Failure::permanent(e.to_string()))?;
    Ok(out)
}

#[cfg(not(target_arch = "wasm32"))]
fn no_host(name: &str) -> Failure {
    Failure::permanent(format!("artifact `{name}`: {}", crate::NO_HOST))
}

/// Writes the run's artifact `name`; every `write` is one append (wrap it in a
/// `std::io::BufWriter` for many small writes). The first write of a call starts it
/// afresh.
#[derive(Debug)]
pub struct Writer {
    name: String,
    size: u64,
}

impl Writer {
    pub fn new(name: &str) -> Writer {
        Writer {
            name: name.to_string(),
            size: 0,
        }
    }

    /// The artifact's size after the last write.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.size = append(&self.name, buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    /// Every write is already durable on the host when it returns.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads the run's artifact `name` from the start.
#[derive(Debug)]
pub struct Reader {
    name: String,
    offset: u64,
}

impl Reader {
    pub fn new(name: &str) -> Reader {
        Reader {
            name: name.to_string(),
            offset: 0,
        }
    }
}

/// The most one host call asks for; the host caps a call at 16 MiB anyway.
const CHUNK: u32 = 1 << 20;

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = u32::try_from(buf.len()).unwrap_or(CHUNK).min(CHUNK);
        let data = read(&self.name, self.offset, want).map_err(io::Error::other)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}
