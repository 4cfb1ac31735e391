//! Encryption at rest of refresh tokens.
//!
//! Role: [`TokenCipher`] seals a refresh token with ChaCha20-Poly1305 under the installation's
//! [`EncryptionKey`] before it is written to `accounts.refresh_token_enc`, and opens it again
//! when an actor needs to talk to Google. Collaborators: [`super::Store`] is the only user; no
//! plaintext token is ever stored or logged.
//!
//! Format: `base64(nonce(12) || ciphertext || tag(16))`, with a fresh random nonce per write.
//! The associated data binds a ciphertext to its row (the account alias), so a ciphertext
//! copied into another account's row fails to open instead of silently authenticating as the
//! wrong user.
//!
//! Key source: `ENCRYPTION_KEY` when set (always, for PostgreSQL: the configuration refuses to
//! start without it). For SQLite without `ENCRYPTION_KEY` — the demo and the zero-config
//! default — [`load_or_create_key_file`] generates a key once and keeps it in a file beside
//! the database (`<db>.key`, mode 0600). That keeps tokens out of the database file itself
//! (a copied `.db` alone is useless), costs the operator nothing, and survives restarts; the
//! trade-off is that whoever can read both files can read the tokens, which for a local
//! SQLite deployment is the same person who owns the process anyway.

use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;
use secrecy::SecretString;

use crate::config::EncryptionKey;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Why a token could not be sealed, opened or its key loaded.
///
/// Deliberately vague about *which* check failed on open: wrong key, wrong row and tampering
/// all look the same to an attacker.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("stored token is not valid base64 or is too short")]
    Malformed,
    #[error("stored token failed authentication (wrong key, wrong account, or tampered)")]
    Unauthentic,
    #[error("decrypted token is not UTF-8")]
    NotUtf8,
    #[error("encryption failed")]
    Seal,
    #[error("the token encryption key does not match the one this database was written with (was ENCRYPTION_KEY changed, or the SQLite key file `<db>.key` lost?)")]
    WrongKey,
    #[error("key file {path}: {problem}")]
    KeyFile { path: PathBuf, problem: String },
}

/// Seals and opens refresh tokens under one key.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher([REDACTED])")
    }
}

impl TokenCipher {
    pub fn new(key: &EncryptionKey) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key.expose())),
        }
    }

    /// Encrypts `plaintext` bound to `aad`; the result is what the database column holds.
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Decrypts a column value written by [`TokenCipher::seal`] with the same `aad`.
    pub fn open(&self, stored: &str, aad: &[u8]) -> Result<SecretString, CryptoError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(stored.trim())
            .map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Unauthentic)?;
        let text = String::from_utf8(plaintext).map_err(|_| CryptoError::NotUtf8)?;
        Ok(SecretString::from(text))
    }
}

/// The associated data of an account's token: binds the ciphertext to that account's alias.
pub fn account_aad(alias: &str) -> Vec<u8> {
    format!("mcss.account.refresh_token:{alias}").into_bytes()
}

/// What a credential's ciphertext is bound to: its row id, so a token copied to another row
/// does not open.
pub fn credential_aad(id: i64) -> Vec<u8> {
    format!("mcss.credential.refresh_token:{id}").into_bytes()
}

/// The key file that belongs to a SQLite database file: `<db>.key` beside it.
pub fn key_file_for(database_file: &Path) -> PathBuf {
    let mut name = database_file.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Reads the key in `path`, or creates it (64 hex digits, mode 0600) when missing.
///
/// Creation uses `create_new`, so two processes starting at once agree on one key: the
/// loser of the race reads the winner's file.
pub fn load_or_create_key_file(path: &Path) -> Result<EncryptionKey, CryptoError> {
    let problem = |problem: String| CryptoError::KeyFile {
        path: path.to_owned(),
        problem,
    };
    match read_key_file(path) {
        Ok(key) => return Ok(key),
        Err(ReadKey::Missing) => {}
        Err(ReadKey::Bad(p)) => return Err(problem(p)),
    }
    let key = EncryptionKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{}\n", key.to_hex()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| problem(format!("cannot write: {e}")))?;
            Ok(key)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            read_key_file(path).map_err(|e| match e {
                ReadKey::Missing => problem("vanished while being created".to_owned()),
                ReadKey::Bad(p) => problem(p),
            })
        }
        Err(e) => Err(problem(format!("cannot create: {e}"))),
    }
}

enum ReadKey {
    Missing,
    Bad(String),
}

fn read_key_file(path: &Path) -> Result<EncryptionKey, ReadKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => EncryptionKey::parse(text.trim()).map_err(ReadKey::Bad),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(ReadKey::Missing),
        Err(e) => Err(ReadKey::Bad(format!("cannot read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    const TOKEN: &str = "1//0gFAKE-refresh-token";

    #[test]
    fn a_sealed_token_opens_with_the_same_key_and_alias() {
        let cipher = TokenCipher::new(&EncryptionKey::generate());
        let stored = cipher.seal(TOKEN, &account_aad("Calendar 01")).unwrap();
        assert!(!stored.contains(TOKEN));
        let opened = cipher.open(&stored, &account_aad("Calendar 01")).unwrap();
        assert_eq!(opened.expose_secret(), TOKEN);
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let cipher = TokenCipher::new(&EncryptionKey::generate());
        let aad = account_aad("Calendar 01");
        assert_ne!(
            cipher.seal(TOKEN, &aad).unwrap(),
            cipher.seal(TOKEN, &aad).unwrap()
        );
    }

    #[test]
    fn a_tampered_ciphertext_is_refused() {
        let cipher = TokenCipher::new(&EncryptionKey::generate());
        let aad = account_aad("Calendar 01");
        let stored = cipher.seal(TOKEN, &aad).unwrap();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&stored)
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 0x01;
        let tampered = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(matches!(
            cipher.open(&tampered, &aad),
            Err(CryptoError::Unauthentic)
        ));
        assert!(matches!(
            cipher.open("bm90IGVub3VnaA==", &aad),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn a_different_key_cannot_open_the_token() {
        let aad = account_aad("Calendar 01");
        let stored = TokenCipher::new(&EncryptionKey::generate())
            .seal(TOKEN, &aad)
            .unwrap();
        let other = TokenCipher::new(&EncryptionKey::generate());
        assert!(matches!(
            other.open(&stored, &aad),
            Err(CryptoError::Unauthentic)
        ));
    }

    #[test]
    fn a_token_moved_to_another_account_cannot_be_opened() {
        let cipher = TokenCipher::new(&EncryptionKey::generate());
        let stored = cipher.seal(TOKEN, &account_aad("Calendar 01")).unwrap();
        assert!(matches!(
            cipher.open(&stored, &account_aad("Calendar 02")),
            Err(CryptoError::Unauthentic)
        ));
    }

    #[test]
    fn the_key_file_is_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_for(&dir.path().join("mcss.db"));
        assert_eq!(path, dir.path().join("mcss.db.key"));
        let first = load_or_create_key_file(&path).unwrap();
        let second = load_or_create_key_file(&path).unwrap();
        assert_eq!(first.expose(), second.expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcss.db.key");
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            load_or_create_key_file(&path),
            Err(CryptoError::KeyFile { .. })
        ));
    }
}
