//! Grant keys: a directory of key files, several of each kind at once for rotation.
//!
//! One file per key, named `{kid}.{kind}`:
//!
//! * `{kid}.hmac`: an HMAC-SHA256 secret for regiongate's own token, base64 (standard or
//!   URL-safe alphabet, padding optional) of at least [`MIN_HMAC_BYTES`] random bytes
//!   (`openssl rand -base64 32`).
//! * `{kid}.secure-link`: the nginx `secure_link_md5` secret, as written into the nginx
//!   config: [`MIN_SECURE_LINK_CHARS`] to 256 printable ASCII characters, none of them
//!   whitespace or `"'$;{}\` (which would end or change the nginx string).
//! * `{kid}.ed25519.pem`: an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm
//!   ed25519`), for the JWT; its public half is served in the JWKS.
//!
//! Key ids are 1 to 64 characters of `A-Z a-z 0-9 _ -`. Of each kind the key with the
//! greatest id (byte order) signs, so name keys by date (`2026-12-07.hmac`); all keys of a
//! kind verify (HMAC) or are published (JWKS) until their file is removed. Names starting with
//! `.` are skipped (Kubernetes Secret volumes keep `..data` and timestamped directories
//! there); any other file that is not a key, and any bad key, refuses the whole directory with
//! an error naming the file (never its content).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Fewest bytes an HMAC secret may have (the SHA-256 block of security: 256 bits).
pub const MIN_HMAC_BYTES: usize = 32;
/// Fewest characters a `secure_link` secret may have.
pub const MIN_SECURE_LINK_CHARS: usize = 24;
/// Largest key file read, bytes.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// Why a key directory was refused. Never carries key material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The directory or a file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A file is not a key or holds a bad one.
    #[error("{file}: {reason}")]
    Bad {
        /// The file name inside the directory.
        file: String,
        /// What is wrong (no key material).
        reason: String,
    },
    /// The directory holds no key at all.
    #[error("{0}: no key files (*.hmac, *.secure-link, *.ed25519.pem)")]
    Empty(String),
}

/// The kind of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyKind {
    /// HMAC-SHA256 secret (regiongate's token).
    Hmac,
    /// nginx `secure_link_md5` secret.
    SecureLink,
    /// Ed25519 signing key (JWT).
    Ed25519,
}

impl KeyKind {
    /// The kind's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Hmac => "hmac",
            KeyKind::SecureLink => "secure_link",
            KeyKind::Ed25519 => "ed25519",
        }
    }

    fn of_file(name: &str) -> Option<(&str, KeyKind)> {
        for (ext, kind) in [
            (".hmac", KeyKind::Hmac),
            (".secure-link", KeyKind::SecureLink),
            (".ed25519.pem", KeyKind::Ed25519),
        ] {
            if let Some(kid) = name.strip_suffix(ext) {
                return Some((kid, kind));
            }
        }
        None
    }
}

/// The material of one key.
pub(crate) enum Material {
    /// The HMAC state with the key absorbed (cloned per token: two SHA-256 blocks fewer
    /// than keying afresh).
    Hmac(Box<hmac::Hmac<sha2::Sha256>>),
    SecureLink(String),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

/// One key: its id, kind, material and when its file was last changed.
pub struct Key {
    /// The key id (`kid`), from the file name.
    pub kid: String,
    /// The kind.
    pub kind: KeyKind,
    /// The file's modification time.
    pub modified: Option<SystemTime>,
    pub(crate) material: Material,
}

impl std::fmt::Debug for Key {
    // Never the material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// All keys of a directory, sorted by kind, then key id.
#[derive(Debug, Default)]
pub struct KeyRing {
    /// The directory they came from.
    pub dir: PathBuf,
    keys: Vec<Key>,
    /// A fingerprint of the key ids and file contents (to tell a reload that changed
    /// nothing); not derived from the material in a way that reveals it (SHA-256).
    pub fingerprint: String,
}

fn valid_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn bad(file: &str, reason: impl Into<String>) -> KeyError {
    KeyError::Bad {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

impl Key {
    /// A key of `kind` from the content of a key file (tests, fuzz targets, tools).
    ///
    /// # Errors
    /// What is wrong with it, never what is there.
    pub fn from_text(kid: &str, kind: KeyKind, text: &[u8]) -> Result<Key, KeyError> {
        if !valid_kid(kid) {
            return Err(bad(kid, "the key id is 1 to 64 of A-Z a-z 0-9 _ -"));
        }
        Ok(Key {
            kid: kid.to_owned(),
            kind,
            modified: None,
            material: parse_key(kid, kind, text)?,
        })
    }
}

/// Parses one key file's content. Errors say what is wrong, never what is there.
pub(crate) fn parse_key(file: &str, kind: KeyKind, text: &[u8]) -> Result<Material, KeyError> {
    let text = std::str::from_utf8(text).map_err(|_| bad(file, "not UTF-8 text"))?;
    let t = text.trim();
    match kind {
        KeyKind::Hmac => {
            let t = t.trim_end_matches('=');
            let bytes = STANDARD_NO_PAD
                .decode(t)
                .or_else(|_| URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| bad(file, "not base64 (write it with `openssl rand -base64 32`)"))?;
            if bytes.len() < MIN_HMAC_BYTES {
                return Err(bad(
                    file,
                    format!(
                        "{} bytes of secret; at least {MIN_HMAC_BYTES} are needed",
                        bytes.len()
                    ),
                ));
            }
            use hmac::Mac;
            let mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&bytes)
                .map_err(|_| bad(file, "not usable as an HMAC key"))?;
            Ok(Material::Hmac(Box::new(mac)))
        }
        KeyKind::SecureLink => {
            if t.chars().count() < MIN_SECURE_LINK_CHARS || t.len() > 256 {
                return Err(bad(
                    file,
                    format!("a secure_link secret is {MIN_SECURE_LINK_CHARS} to 256 characters"),
                ));
            }
            if !t
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\"'$;{}\\".contains(&b))
            {
                return Err(bad(
                    file,
                    "a secure_link secret is printable ASCII without whitespace or \"'$;{}\\",
                ));
            }
            Ok(Material::SecureLink(t.to_owned()))
        }
        KeyKind::Ed25519 => {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(t).map_err(|_| {
                bad(
                    file,
                    "not an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`)",
                )
            })?;
            Ok(Material::Ed25519(Box::new(key)))
        }
    }
}

impl KeyRing {
    /// Reads every key file of `dir`.
    ///
    /// # Errors
    /// The first unreadable, unknown or bad file, or an empty directory.
    pub fn load(dir: &Path) -> Result<KeyRing, KeyError> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let io = |p: &Path, e: std::io::Error| KeyError::Io {
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            names.push(name);
        }
        names.sort();
        let mut keys = Vec::new();
        let mut fp = Sha256::new();
        for name in names {
            let path = dir.join(&name);
            let Some((kid, kind)) = KeyKind::of_file(&name) else {
                return Err(bad(
                    &name,
                    "not a key file (expected KID.hmac, KID.secure-link or KID.ed25519.pem)",
                ));
            };
            if !valid_kid(kid) {
                return Err(bad(
                    &name,
                    "the key id (the name before the extension) is 1 to 64 of A-Z a-z 0-9 _ -",
                ));
            }
            // Follows symlinks (Secret volumes link each key into `..data/`).
            let meta = std::fs::metadata(&path).map_err(|e| io(&path, e))?;
            if !meta.is_file() {
                return Err(bad(&name, "not a regular file"));
            }
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .map_err(|e| io(&path, e))?
                .take(MAX_KEY_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| io(&path, e))?;
            if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
                return Err(bad(
                    &name,
                    format!("longer than the limit of {MAX_KEY_FILE_BYTES} bytes"),
                ));
            }
            let material = parse_key(&name, kind, &bytes)?;
            fp.update(name.as_bytes());
            fp.update([0]);
            fp.update(Sha256::digest(&bytes));
            keys.push(Key {
                kid: kid.to_owned(),
                kind,
                modified: meta.modified().ok(),
                material,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty(dir.display().to_string()));
        }
        keys.sort_by(|a, b| (a.kind, &a.kid).cmp(&(b.kind, &b.kid)));
        let fingerprint = fp
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(KeyRing {
            dir: dir.to_owned(),
            keys,
            fingerprint,
        })
    }

    /// Every key, by kind then id.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The signing key of a kind: the one with the greatest id.
    pub fn signer(&self, kind: KeyKind) -> Option<&Key> {
        self.keys.iter().rfind(|k| k.kind == kind)
    }

    /// The signing key of a kind given a lead time: the greatest id among the keys whose
    /// file is at least `lead` old at `now` (published in the JWKS, or copied to nginx, for
    /// that long before they sign), else the greatest id.
    pub fn signer_after(&self, kind: KeyKind, lead: Duration, now: SystemTime) -> Option<&Key> {
        let ready = |k: &&Key| {
            k.modified
                .is_none_or(|m| now.duration_since(m).is_ok_and(|age| age >= lead))
        };
        self.keys
            .iter()
            .filter(|k| k.kind == kind)
            .rfind(ready)
            .or_else(|| self.signer(kind))
    }

    /// The key of a kind with this id.
    pub fn find(&self, kind: KeyKind, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kind == kind && k.kid == kid)
    }
}

/// A running watch of the key directory; dropping it stops watching.
pub struct KeyWatcher {
    _inner: notify::RecommendedWatcher,
}

/// Watches `dir` and calls `on_change` after each burst of changes (debounced like the data
/// watch: atomic renames and Secret volume `..data` swaps come as bursts). Call inside a
/// tokio runtime.
///
/// # Errors
/// If the directory cannot be watched.
pub fn watch(dir: &Path, on_change: impl Fn() + Send + 'static) -> notify::Result<KeyWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = tx.send(());
        }
    })?;
    w.watch(dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(crate::filemap::DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            on_change();
        }
    });
    Ok(KeyWatcher { _inner: w })
}

/// A test key in the form `openssl genpkey -algorithm ed25519` writes: the secret of RFC 8032
/// test vector 1 (public, never for use).
#[cfg(test)]
pub(crate) const TEST_ED25519_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    const HMAC_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    use super::TEST_ED25519_PEM as ED_PEM;

    #[test]
    fn loads_several_keys_and_the_greatest_id_signs() {
        let d = tempfile::tempdir().expect("dir");
        write(d.path(), "2026-01.hmac", HMAC_A);
        write(d.path(), "2026-02.hmac", &URL_SAFE_NO_PAD.encode([7u8; 40]));
        write(d.path(), "k1.secure-link", "abcdefghijklmnopqrstuvwxyz0123");
        write(d.path(), "ed1.ed25519.pem", ED_PEM);
        write(d.path(), "..data", "ignored");
        let ring = KeyRing::load(d.path()).expect("loads");
        assert_eq!(ring.keys().len(), 4);
        assert_eq!(
            ring.signer(KeyKind::Hmac).map(|k| k.kid.as_str()),
            Some("2026-02")
        );
        assert!(ring.find(KeyKind::Hmac, "2026-01").is_some());
        assert!(ring.find(KeyKind::SecureLink, "2026-01").is_none());
        assert_eq!(
            ring.signer(KeyKind::Ed25519).map(|k| k.kid.as_str()),
            Some("ed1")
        );
        // With a lead time the newest key waits; when none is old enough the newest signs.
        let now = SystemTime::now();
        let lead = Duration::from_secs(300);
        let signer = |r: &KeyRing, at| {
            r.signer_after(KeyKind::Hmac, lead, at)
                .map(|k| k.kid.clone())
        };
        assert_eq!(signer(&ring, now).as_deref(), Some("2026-02"));
        let mut aged = KeyRing::load(d.path()).expect("loads");
        for k in &mut aged.keys {
            if k.kid == "2026-01" {
                k.modified = Some(now - Duration::from_secs(600));
            }
        }
        assert_eq!(signer(&aged, now).as_deref(), Some("2026-01"));
        assert_eq!(signer(&aged, now + lead).as_deref(), Some("2026-02"));
        // Debug output names ids and kinds, never material.
        let dbg = format!("{ring:?}");
        assert!(
            dbg.contains("2026-02") && !dbg.contains("abcdefghij"),
            "{dbg}"
        );
    }

    #[test]
    fn bad_keys_are_refused_naming_the_file_not_the_content() {
        let cases: [(&str, &str, &str); 7] = [
            ("short.hmac", "c2hvcnQ=", "bytes of secret"),
            ("notb64.hmac", "not base64 at all!!", "not base64"),
            ("s.secure-link", "tooshort", "24 to 256"),
            (
                "q.secure-link",
                "abcdefghijklmnopqrstuvwxyz\"x",
                "printable ASCII",
            ),
            (
                "e.ed25519.pem",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "PKCS#8",
            ),
            ("bad kid.hmac", HMAC_A, "key id"),
            ("README.txt", "hello", "not a key file"),
        ];
        for (name, text, why) in cases {
            let d = tempfile::tempdir().expect("dir");
            write(d.path(), name, text);
            let e = KeyRing::load(d.path()).expect_err(name);
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains(why), "{name}: {msg}");
            assert!(!msg.contains(text), "{name}: the content leaked: {msg}");
        }
        let d = tempfile::tempdir().expect("dir");
        assert!(matches!(KeyRing::load(d.path()), Err(KeyError::Empty(_))));
        assert!(matches!(
            KeyRing::load(&d.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }
}
