//! Secrets at rest: the passwords in `sync_tasks.source_connection_config` and
//! `target_connection_config` are stored encrypted and decrypted only in memory.
//!
//! Format of a stored value: `enc:v1:` + base64 (standard alphabet, padded) of
//! a 24-byte random nonce followed by the XChaCha20-Poly1305 ciphertext and its
//! 16-byte tag. The associated data is the version tag `enc:v1`, so a value
//! cannot be replayed under another format version.
//!
//! The key is 32 random bytes kept in a file (base64, optional trailing
//! newline) that only the service user may read: [`SecretKey::load`] refuses a
//! file that group or others can read or write. Every fleet member that reads
//! the same metadata database needs the same key file.
//!
//! Nothing here echoes a password, a stored value or key material in an error
//! or in `Debug` output.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use engine::config::Secret;
use serde_json::Value;
use zeroize::Zeroizing;

/// Prefix of an encrypted value in the current format.
pub const PREFIX: &str = "enc:v1:";
const AAD: &[u8] = b"enc:v1";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// A key file is ~45 bytes; anything much larger is not one.
const MAX_KEY_FILE_LEN: u64 = 1024;
/// What a redacted secret looks like.
pub const REDACTED: &str = "***";

/// Why a key file or a stored secret could not be used. Messages name files
/// and fields, never values.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "cannot read the secret key file {path}: {source}{hint}",
        path = path.display(),
        hint = read_hint(source)
    )]
    ReadKey { path: PathBuf, source: io::Error },
    #[error(
        "the secret key file {path} can be read or written by group or others (mode {mode:04o}); \
         restrict it to the service user: chmod 600 {path}; chown <service user> {path}",
        path = path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error(
        "the secret key file {path} is not a dbsync secret key: {reason}; \
         create one with `dbsync secret keygen --out <path>`",
        path = path.display()
    )]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "the secret key file {path} already exists: refusing to overwrite it \
         (values encrypted with it would become unreadable); remove it first if that is really meant",
        path = path.display()
    )]
    KeyExists { path: PathBuf },
    #[error("cannot write the secret key file {path}: {source}", path = path.display())]
    WriteKey { path: PathBuf, source: io::Error },
    #[error("the value is not an encrypted secret: {0}")]
    Malformed(&'static str),
    #[error(
        "the encrypted secret cannot be decrypted: wrong secret key file, or the stored value was altered"
    )]
    Decrypt,
    #[error(
        "the connection config's \"password\" is stored in plain text; encrypt it with \
         `dbsync secret encrypt --key-file <key file>` and store the enc:v1:… value instead"
    )]
    Plaintext,
    #[error(
        "the connection config's \"password\" is encrypted but no secret key is configured: \
         set [metastore] secret_key_file"
    )]
    NoKey,
    #[error("invalid connection config: {0}")]
    BadConfig(&'static str),
}

fn read_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (the service user must own it: chown <service user> <key file>)"
        }
        io::ErrorKind::NotFound => " (create one with `dbsync secret keygen --out <path>`)",
        _ => "",
    }
}

/// The key that encrypts stored passwords. `Debug` prints `SecretKey(***)`;
/// the key bytes are wiped from memory when it is dropped.
#[derive(Clone)]
pub struct SecretKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let cipher = XChaCha20Poly1305::new(&(*bytes).into());
        Self { bytes, cipher }
    }

    /// Reads a key file: base64 of 32 bytes, optionally followed by a newline.
    /// Refuses a file that group or others may read or write.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let read_err = |source| SecretError::ReadKey {
            path: path.to_path_buf(),
            source,
        };
        let bad = |reason: &str| SecretError::BadKey {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(bad("it is not a regular file"));
        }
        check_private(path, &meta)?;
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(bad(
                "it is far larger than a key (expected 44 base64 characters)",
            ));
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => bad("it is not text"),
                _ => read_err(e),
            })?;
        let body = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        let decoded = Zeroizing::new(STANDARD.decode(body.as_bytes()).map_err(|_| {
            bad("its content is not base64 (expected 44 base64 characters and an optional newline)")
        })?);
        if decoded.len() != KEY_LEN {
            return Err(bad(&format!(
                "it holds {} bytes, a key has {KEY_LEN}",
                decoded.len()
            )));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&decoded);
        Ok(Self::from_bytes(bytes))
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        Self::from_bytes(Zeroizing::new(<[u8; KEY_LEN]>::generate()))
    }

    /// Writes the key to a new file with mode 0600; refuses to overwrite an
    /// existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), SecretError> {
        let write_err = |source| SecretError::WriteKey {
            path: path.to_path_buf(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => SecretError::KeyExists {
                path: path.to_path_buf(),
            },
            _ => write_err(e),
        })?;
        let mut text = Zeroizing::new(STANDARD.encode(*self.bytes));
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_err)
    }

    /// Encrypts `plaintext` into `enc:v1:` + base64(nonce ‖ ciphertext ‖ tag),
    /// with a fresh random nonce each time.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let nonce = XNonce::from(<[u8; NONCE_LEN]>::generate());
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: AAD,
        };
        let sealed = self
            .cipher
            .encrypt(&nonce, payload)
            // Only messages longer than 256 GiB are refused.
            .expect("XChaCha20-Poly1305 encrypts any password");
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(raw))
    }

    /// Decrypts a stored `enc:v1:` value. A wrong key and a tampered value give
    /// the same error; neither echoes the value.
    pub fn decrypt(&self, stored: &str) -> Result<Secret, SecretError> {
        let stored = stored.trim();
        let body = match stored.strip_prefix(PREFIX) {
            Some(body) => body,
            None if is_encrypted(stored) => {
                return Err(SecretError::Malformed(
                    "it uses an encryption format version this dbsync does not know (expected enc:v1:); upgrade dbsync",
                ))
            }
            None => {
                return Err(SecretError::Malformed(
                    "it does not start with enc:v1: (encrypt it with `dbsync secret encrypt`)",
                ))
            }
        };
        let raw = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| SecretError::Malformed("the part after enc:v1: is not base64"))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretError::Malformed(
                "it is too short to hold a nonce and a tag (truncated?)",
            ));
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| SecretError::Malformed("bad nonce"))?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: AAD,
                },
            )
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plain).map(Secret::new).map_err(|e| {
            drop(Zeroizing::new(e.into_bytes()));
            SecretError::Malformed("the decrypted secret is not UTF-8 text")
        })
    }
}

/// Refuses a key file that group or others may read or write.
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, meta);
    Ok(())
}

/// True when `s` is an encrypted value (`enc:v<digits>:…`), of any format version.
pub fn is_encrypted(s: &str) -> bool {
    let Some(rest) = s.trim_start().strip_prefix("enc:v") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && rest[digits..].starts_with(':')
}

fn config_object(cfg: &Value) -> Result<&serde_json::Map<String, Value>, SecretError> {
    cfg.as_object().ok_or(SecretError::BadConfig(
        "a connection config must be a JSON object",
    ))
}

/// Encrypts the "password" field of a connection-config JSON object in place
/// (no-op when it is absent, null, empty or already encrypted).
pub fn seal_connection_config(key: &SecretKey, cfg: &mut Value) -> Result<(), SecretError> {
    config_object(cfg)?;
    let Some(field) = cfg.get_mut("password") else {
        return Ok(());
    };
    match field {
        Value::Null => Ok(()),
        Value::String(s) if s.is_empty() || is_encrypted(s) => Ok(()),
        Value::String(s) => {
            let sealed = key.encrypt(s);
            let old = std::mem::replace(s, sealed);
            drop(Zeroizing::new(old));
            Ok(())
        }
        _ => Err(SecretError::BadConfig("\"password\" must be a string")),
    }
}

/// Returns the decrypted password of a connection config (None when there is
/// none). A password stored in plain text is an error.
pub fn open_password(key: Option<&SecretKey>, cfg: &Value) -> Result<Option<Secret>, SecretError> {
    match config_object(cfg)?.get("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if is_encrypted(s) => {
            key.ok_or(SecretError::NoKey)?.decrypt(s).map(Some)
        }
        Some(Value::String(_)) => Err(SecretError::Plaintext),
        Some(_) => Err(SecretError::BadConfig("\"password\" must be a string")),
    }
}

/// A copy safe to show or audit: every password-like field at any depth
/// ("password", "sslpassword", "passwd", "pwd", "secret"…) becomes `***`,
/// and passwords inside connection strings in other fields are masked.
pub fn redact_connection_config(cfg: &Value) -> Value {
    match cfg {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_field(k) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact_connection_config(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_connection_config).collect()),
        Value::String(s) => Value::String(engine::config::redact_url(s)),
        other => other.clone(),
    }
}

fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    (n.contains("password") && !n.ends_with("_env"))
        || n.contains("secret")
        || n == "passwd"
        || n == "pwd"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_mode(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn round_trip_through_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = SecretKey::generate();
        key.write_new(&path).unwrap();
        let loaded = SecretKey::load(&path).unwrap();
        for pw in ["S3cr3t-pw-42", "", "ünï cödé 😀 \"quoted\"\n"] {
            let stored = key.encrypt(pw);
            assert!(stored.starts_with(PREFIX) && is_encrypted(&stored));
            assert!(pw.is_empty() || !stored.contains(pw));
            assert_eq!(loaded.decrypt(&stored).unwrap().expose(), pw);
        }
        // A fresh nonce every time.
        assert_ne!(key.encrypt("same"), key.encrypt("same"));
    }

    #[test]
    fn key_file_format_and_creation() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        SecretKey::generate().write_new(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(STANDARD.decode(text.trim_end()).unwrap().len(), KEY_LEN);
        // Never overwrites.
        let err = SecretKey::generate().write_new(&path).unwrap_err();
        assert!(matches!(err, SecretError::KeyExists { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Without the trailing newline, and with CRLF, it loads too.
        let b64 = text.trim_end();
        SecretKey::load(&write_mode(dir.path(), "a", b64, 0o600)).unwrap();
        SecretKey::load(&write_mode(dir.path(), "b", &format!("{b64}\r\n"), 0o400)).unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let key = SecretKey::generate();
        let stored = key.encrypt("hunter2");
        let mut raw = STANDARD.decode(&stored[PREFIX.len()..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 0x01;
            let bad = format!("{PREFIX}{}", STANDARD.encode(&raw));
            let err = key.decrypt(&bad).unwrap_err();
            assert!(matches!(err, SecretError::Decrypt), "{err}");
            raw[i] ^= 0x01;
        }
        let truncated = &stored[..stored.len() - 8];
        assert!(key.decrypt(truncated).is_err());
        let err = key.decrypt(&format!("{PREFIX}AAAA")).unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
        let err = key.decrypt("enc:v1:not*base64").unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
        let err = key.decrypt("enc:v9:AAAA").unwrap_err();
        assert!(err.to_string().contains("format version"), "{err}");
        let err = key.decrypt("hunter2").unwrap_err().to_string();
        assert!(err.contains("enc:v1:") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_wrong_key_is_a_clear_error_that_echoes_nothing() {
        let stored = SecretKey::generate().encrypt("hunter2");
        let err = SecretKey::generate().decrypt(&stored).unwrap_err();
        assert!(matches!(err, SecretError::Decrypt));
        let msg = err.to_string();
        assert!(msg.contains("wrong secret key file"), "{msg}");
        assert!(!msg.contains("hunter2") && !msg.contains(&stored[PREFIX.len()..]));
    }

    #[test]
    fn a_key_file_open_to_group_or_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        SecretKey::generate().write_new(&good).unwrap();
        let b64 = std::fs::read_to_string(&good).unwrap();
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666] {
            let p = write_mode(dir.path(), &format!("k{mode:o}"), &b64, mode);
            let err = SecretKey::load(&p).unwrap_err();
            assert!(matches!(err, SecretError::KeyPermissions { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", p.display()))
                    && msg.contains("chown <service user>"),
                "{msg}"
            );
            assert!(!msg.contains(b64.trim_end()), "{msg}");
        }
    }

    #[test]
    fn bad_key_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("short", STANDARD.encode([7u8; 16]), "holds 16 bytes"),
            ("long", STANDARD.encode([7u8; 33]), "holds 33 bytes"),
            (
                "nonb64",
                "this is not a key at all!".to_string(),
                "not base64",
            ),
            ("empty", String::new(), "holds 0 bytes"),
            ("big", "A".repeat(5000), "far larger"),
        ];
        for (name, text, want) in cases {
            let err = SecretKey::load(&write_mode(dir.path(), name, &text, 0o600)).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(want) && msg.contains("dbsync secret keygen"),
                "{name}: {msg}"
            );
            assert!(text.is_empty() || !msg.contains(&text), "{name}: {msg}");
        }
        let missing = dir.path().join("missing");
        let msg = SecretKey::load(&missing).unwrap_err().to_string();
        assert!(msg.contains("missing") && msg.contains("keygen"), "{msg}");
        let msg = SecretKey::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn seal_and_open_connection_configs() {
        let key = SecretKey::generate();
        let mut cfg = json!({"host": "db", "port": 5432, "username": "u", "password": "hunter2", "ssl": true});
        seal_connection_config(&key, &mut cfg).unwrap();
        let stored = cfg["password"].as_str().unwrap().to_string();
        assert!(is_encrypted(&stored) && !cfg.to_string().contains("hunter2"));
        // Sealing twice changes nothing.
        seal_connection_config(&key, &mut cfg).unwrap();
        assert_eq!(cfg["password"], stored.as_str());
        assert_eq!(cfg["host"], "db");
        let pw = open_password(Some(&key), &cfg).unwrap().unwrap();
        assert_eq!(pw.expose(), "hunter2");
        // No key configured, wrong key, plain text, none at all.
        assert!(matches!(open_password(None, &cfg), Err(SecretError::NoKey)));
        let other = SecretKey::generate();
        assert!(matches!(
            open_password(Some(&other), &cfg),
            Err(SecretError::Decrypt)
        ));
        let plain = json!({"host": "db", "password": "hunter2"});
        let msg = open_password(Some(&key), &plain).unwrap_err().to_string();
        assert!(
            msg.contains("plain text") && msg.contains("dbsync secret encrypt"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"));
        for none in [
            json!({"host": "db"}),
            json!({"password": null}),
            json!({"password": ""}),
        ] {
            assert!(open_password(Some(&key), &none).unwrap().is_none());
            let mut c = none.clone();
            seal_connection_config(&key, &mut c).unwrap();
            assert_eq!(c, none);
        }
        // Not an object, or a password that is not a string.
        assert!(matches!(
            open_password(Some(&key), &json!([1])),
            Err(SecretError::BadConfig(_))
        ));
        assert!(seal_connection_config(&key, &mut json!("x")).is_err());
        let mut num = json!({"password": 1234});
        assert!(seal_connection_config(&key, &mut num).is_err());
        assert!(open_password(Some(&key), &num).is_err());
    }

    #[test]
    fn redaction_hides_every_password_at_any_depth() {
        let cfg = json!({
            "host": "db", "port": 5432, "username": "u", "password": "hunter2",
            "ssl": {"mode": "verify-full", "sslpassword": "keypw", "cert": "/c.pem"},
            "options": {"list": [{"Password": "x1"}, {"api_secret": "x2"}], "dsn": "postgres://u:x3@h/db",
                        "conninfo": "host=h password=x4 user=u", "password_env": "PW_VAR", "pwd": 77},
            "nothing": {"password": null}
        });
        let red = redact_connection_config(&cfg);
        let text = red.to_string();
        for secret in ["hunter2", "keypw", "x1", "x2", "x3", "x4", "77"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(red["password"], REDACTED);
        assert_eq!(red["ssl"]["sslpassword"], REDACTED);
        assert_eq!(red["options"]["list"][0]["Password"], REDACTED);
        assert_eq!(red["options"]["dsn"], "postgres://u:***@h/db");
        // Not secrets: kept as they are.
        assert_eq!(red["host"], "db");
        assert_eq!(red["port"], 5432);
        assert_eq!(red["ssl"]["cert"], "/c.pem");
        assert_eq!(red["options"]["password_env"], "PW_VAR");
        assert_eq!(red["nothing"]["password"], Value::Null);
        // The input is untouched.
        assert_eq!(cfg["password"], "hunter2");
    }

    #[test]
    fn debug_never_shows_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = SecretKey::generate();
        key.write_new(&path).unwrap();
        let b64 = std::fs::read_to_string(&path).unwrap();
        let shown = format!(
            "{key:?} {:?} {:#?}",
            SecretKey::load(&path).unwrap(),
            Some(&key)
        );
        assert!(shown.starts_with("SecretKey(***)"), "{shown}");
        assert!(!shown.contains(b64.trim_end()));
        assert!(!shown.contains(&format!("{:?}", &key.bytes[..4])));
        let secret = key.decrypt(&key.encrypt("hunter2")).unwrap();
        assert_eq!(format!("{secret:?}"), "***");
    }

    #[test]
    fn is_encrypted_recognises_only_the_prefix_form() {
        assert!(is_encrypted("enc:v1:AAAA"));
        assert!(is_encrypted("enc:v12:AAAA"));
        assert!(!is_encrypted("enc:v:AAAA"));
        assert!(!is_encrypted("enc:vx:AAAA"));
        assert!(!is_encrypted("hunter2"));
        assert!(!is_encrypted("encrypted"));
        assert!(!is_encrypted(""));
    }
}
