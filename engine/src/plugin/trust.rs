//! Publisher signatures of plugins, in the minisign format (Ed25519, prehashed), so
//! the `minisign` CLI and medic's own `plugin keygen`/`plugin sign` interoperate.
//!
//! Policy: an install is verified against the operator's trusted keys (a dir of
//! `*.pub` minisign public key files) before anything is written. A signed plugin
//! must verify with a trusted key; an unsigned one is installed only when the
//! operator says so (`allow_unsigned`). The signature is kept beside the installed
//! wasm (`NAME.wasm.minisig`) so list and inspect can say who signed it.

use std::io::Cursor;
use std::path::Path;

use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use super::Error;

/// A key id as minisign prints it: 16 uppercase hex digits.
fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(&keynum[..8.min(keynum.len())]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// Who signed an installed plugin, as medic sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    /// No signature is stored beside it.
    Unsigned,
    /// Its stored signature verifies with this trusted key.
    Trusted { key_id: String },
    /// A signature is stored but does not verify now (its key is no longer trusted,
    /// or the file changed): `reason` says which.
    Unverified {
        key_id: Option<String>,
        reason: String,
    },
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signer::Unsigned => write!(f, "unsigned"),
            Signer::Trusted { key_id } => write!(f, "signed by {key_id}"),
            Signer::Unverified { reason, .. } => write!(f, "signature not verified: {reason}"),
        }
    }
}

/// The operator's trusted public keys.
#[derive(Default)]
pub struct TrustedKeys {
    /// (key id, key, file it came from).
    keys: Vec<(String, PublicKey, String)>,
}

impl TrustedKeys {
    /// Reads every `*.pub` file in `dir` (a missing dir trusts nobody). A file that
    /// is not a minisign public key is an error naming it: an operator who put it
    /// there meant to trust something.
    pub fn load(dir: &Path) -> Result<TrustedKeys, Error> {
        let mut keys = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustedKeys::default()),
            Err(e) => {
                return Err(Error::Untrusted {
                    message: format!("reading the trusted-keys dir {}: {e}", dir.display()),
                });
            }
        };
        let mut paths: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pub") && p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| Error::Untrusted {
                message: format!("reading trusted key {shown}: {e}"),
            })?;
            let key = parse_public_key(&text).map_err(|e| Error::Untrusted {
                message: format!(
                    "trusted key {shown} is not a minisign public key ({e}); expected the \
                     two-line file `medic plugin keygen` or `minisign -G` writes"
                ),
            })?;
            keys.push((key_id(key.keynum()), key, shown));
        }
        Ok(TrustedKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `signature` (the text of a `.minisig` file) over `wasm`; returns the
    /// id of the trusted key that made it. `file` names the signature in errors.
    pub fn verify(&self, wasm: &[u8], signature: &str, file: &str) -> Result<String, Error> {
        let sig = SignatureBox::from_string(signature).map_err(|e| Error::Untrusted {
            message: format!(
                "{file} is not a minisign signature ({e}); expected the file `medic plugin \
                 sign` or `minisign -S` writes (FILE.wasm.minisig)"
            ),
        })?;
        let id = key_id(sig.keynum());
        let Some((_, key, _)) = self.keys.iter().find(|(k, _, _)| *k == id) else {
            return Err(Error::Untrusted {
                message: format!(
                    "{file} was made with key {id}, which is not a trusted key{}; if you \
                     trust its publisher, put their public key file (KEY.pub) in the \
                     trusted-keys dir",
                    if self.keys.is_empty() {
                        " (no keys are trusted yet)".to_string()
                    } else {
                        format!(
                            " (trusted: {})",
                            self.keys
                                .iter()
                                .map(|(k, _, f)| format!("{k} from {f}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            });
        };
        minisign::verify(key, &sig, Cursor::new(wasm), true, false, false).map_err(|e| {
            Error::Untrusted {
                message: format!(
                    "{file} (key {id}) does not match this wasm ({e}): the wasm was changed \
                     after signing, or the signature belongs to another file; get both \
                     files again from the publisher"
                ),
            }
        })?;
        Ok(id)
    }

    /// What a stored signature (if any) says now.
    pub(super) fn signer(&self, wasm: &[u8], signature: Option<&str>, file: &str) -> Signer {
        let Some(signature) = signature else {
            return Signer::Unsigned;
        };
        match self.verify(wasm, signature, file) {
            Ok(key_id) => Signer::Trusted { key_id },
            Err(e) => Signer::Unverified {
                key_id: SignatureBox::from_string(signature)
                    .ok()
                    .map(|s| key_id(s.keynum())),
                reason: e.to_string(),
            },
        }
    }
}

fn parse_public_key(text: &str) -> Result<PublicKey, minisign::PError> {
    let text = text.trim();
    // A bare base64 key (the second line alone) is accepted too.
    if !text.contains('\n') {
        return PublicKey::from_base64(text);
    }
    PublicKeyBox::from_string(text)?.into_public_key()
}

/// A new key pair: (public key file text, secret key file text, key id). The secret
/// key is not password-protected (like `minisign -G -W`), so signing can run in CI;
/// keep the file private.
pub fn keygen() -> Result<(String, String, String), String> {
    let KeyPair { pk, sk } = KeyPair::generate_unencrypted_keypair()
        .map_err(|e| format!("generating a key pair: {e}"))?;
    let id = key_id(pk.keynum());
    let public = pk.to_box().map_err(|e| e.to_string())?.into_string();
    let secret = sk
        .to_box(Some(&format!("medic plugin secret key {id}")))
        .map_err(|e| e.to_string())?
        .into_string();
    Ok((public, secret, id))
}

/// Signs `wasm` with the secret key file text `secret` (unencrypted: as `keygen` or
/// `minisign -G -W` writes it); returns the `.minisig` text and the key id.
pub fn sign(wasm: &[u8], secret: &str, trusted_comment: &str) -> Result<(String, String), String> {
    let sk = match SecretKeyBox::from_string(secret).and_then(|b| b.into_unencrypted_secret_key()) {
        Ok(sk) => sk,
        Err(e) => unchecked_secret_key(secret).ok_or_else(|| {
            format!(
                "not an unencrypted minisign secret key ({e}): use the file `medic plugin \
                 keygen` wrote, or one from `minisign -G -W`"
            )
        })?,
    };
    let id = key_id(sk.keynum());
    // Signing with the public key given makes the crate verify the signature it made,
    // so a damaged key cannot produce a signature that would only fail at install.
    let pk = PublicKey::from_secret_key(&sk).map_err(|e| format!("reading the key: {e}"))?;
    let sig = minisign::sign(
        Some(&pk),
        &sk,
        Cursor::new(wasm),
        Some(trusted_comment),
        Some(&format!("signature from medic plugin key {id}")),
    )
    .map_err(|e| format!("signing: {e}"))?;
    Ok((sig.into_string(), id))
}

/// The secret key of an unencrypted key file without checking its checksum: the C
/// `minisign -G -W` (0.11) leaves the checksum of an unencrypted key zeroed, which the
/// crate rejects as corrupted. The signature is verified with the key's public half
/// right after signing, so a damaged key still cannot sign.
fn unchecked_secret_key(secret: &str) -> Option<SecretKey> {
    use base64::Engine as _;
    let line = secret.lines().nth(1)?.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .ok()?;
    let sk = SecretKey::from_bytes(&bytes).ok()?;
    (!sk.is_encrypted()).then_some(sk)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting(public: &str) -> (tempfile::TempDir, TrustedKeys) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("publisher.pub"), public).unwrap();
        let keys = TrustedKeys::load(dir.path()).unwrap();
        (dir, keys)
    }

    #[test]
    fn a_signature_verifies_with_its_trusted_key_and_names_it() {
        let (public, secret, id) = keygen().unwrap();
        let (sig, signed_by) = sign(b"\0asm wasm", &secret, "probe 0.1.0").unwrap();
        assert_eq!(signed_by, id);
        let (_dir, keys) = trusting(&public);
        assert_eq!(keys.verify(b"\0asm wasm", &sig, "p.minisig").unwrap(), id);
        assert_eq!(
            keys.signer(b"\0asm wasm", Some(&sig), "p.minisig"),
            Signer::Trusted { key_id: id }
        );
    }

    #[test]
    fn tampered_wasm_unknown_key_and_garbage_are_told_apart() {
        let (public, secret, _) = keygen().unwrap();
        let (_, other_secret, other_id) = keygen().unwrap();
        let (_dir, keys) = trusting(&public);
        let (sig, id) = sign(b"\0asm wasm", &secret, "t").unwrap();

        let tampered = keys
            .verify(b"\0asm wasm!", &sig, "p.minisig")
            .unwrap_err()
            .to_string();
        assert!(
            tampered.contains("p.minisig")
                && tampered.contains(&id)
                && tampered.contains("changed"),
            "{tampered}"
        );

        let (foreign, _) = sign(b"\0asm wasm", &other_secret, "t").unwrap();
        let unknown = keys
            .verify(b"\0asm wasm", &foreign, "p.minisig")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains(&other_id) && unknown.contains("not a trusted key"),
            "{unknown}"
        );

        let garbage = keys
            .verify(b"\0asm wasm", "hello", "p.minisig")
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("not a minisign signature"), "{garbage}");
    }

    /// A throwaway key pair made by the C `minisign -G -W` 0.11, test use only.
    const CLI_SECRET: &str = "untrusted comment: minisign encrypted secret key
RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAmt6lCa53SNpeiy/CYiK7d4o8Wv7c+rj/IGXIs/HdR5BBSrY5eqSRqjRaiU5pnx+yvGK7jyJKXu+sqaxcaPeNow0UXnkfsGLjAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
";
    const CLI_PUBLIC: &str = "untrusted comment: minisign public key DA4877AE09A5DE9A
RWSa3qUJrndI2jRaiU5pnx+yvGK7jyJKXu+sqaxcaPeNow0UXnkfsGLj
";

    #[test]
    fn a_key_made_by_the_minisign_cli_signs_and_verifies() {
        let (sig, id) = sign(b"\0asm wasm", CLI_SECRET, "t").unwrap();
        assert_eq!(id, "DA4877AE09A5DE9A");
        let (_dir, keys) = trusting(CLI_PUBLIC);
        assert_eq!(keys.verify(b"\0asm wasm", &sig, "p.minisig").unwrap(), id);
        // One bit of the public half of the Ed25519 key (bytes 96..128 of the key
        // data, base64 characters 128..171): the signature no longer verifies.
        let mut garbled: Vec<u8> = CLI_SECRET.into();
        let at = CLI_SECRET.find('\n').unwrap() + 1 + 140;
        garbled[at] ^= 1;
        let garbled = String::from_utf8(garbled).unwrap();
        assert!(
            sign(b"\0asm wasm", &garbled, "t").is_err(),
            "a damaged key does not sign"
        );
    }

    #[test]
    fn a_trusted_keys_file_that_is_not_a_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oops.pub"), "not a key").unwrap();
        let err = TrustedKeys::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("oops.pub"), "{err}");
        assert!(
            TrustedKeys::load(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }
}
