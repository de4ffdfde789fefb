//! Webhook signing secrets: generated from the OS RNG, shown once, stored only encrypted.
//!
//! A secret is 32 random bytes, shown as 64 lowercase hex chars (the key a receiver hex-decodes,
//! as Frontier's guide does) and as `whsec_<base64>` for Standard Webhooks libraries. At rest it
//! is AES-256-GCM ciphertext with a random 96-bit nonce, bound to its row (`<webhook>:<seq>` as
//! associated data), tagged with the id of the key that made it. Decryption accepts the current
//! key or any previous one; `hookrelay keys reencrypt` moves everything to the current key.
//!
//! The plaintext must never reach the database, a log line, or a list response.

use std::fmt;
use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use anyhow::Context as _;
use base64::Engine as _;
use rand::TryRng as _;
use sha2::{Digest, Sha256};

use crate::config::{Config, parse_encryption_key};

/// Bytes in a signing secret.
pub const SECRET_LEN: usize = 32;
/// Prefix of the Standard Webhooks form.
pub const WHSEC_PREFIX: &str = "whsec_";

/// A webhook signing secret in the clear. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret([u8; SECRET_LEN]);

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

impl SigningSecret {
    /// 32 bytes from the operating system's RNG.
    ///
    /// # Errors
    /// When the OS RNG fails.
    pub fn generate() -> anyhow::Result<Self> {
        let mut bytes = [0u8; SECRET_LEN];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
        Ok(Self(bytes))
    }

    /// Wraps raw key bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The HMAC key.
    #[must_use]
    pub fn bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// 64 lowercase hex chars: what the receiver hex-decodes into the HMAC key.
    #[must_use]
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `whsec_<base64 of the same bytes>`, for Standard Webhooks libraries.
    #[must_use]
    pub fn whsec(&self) -> String {
        format!(
            "{WHSEC_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

/// One AES-256-GCM key and its id.
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        Self {
            id: key_id(bytes),
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }
}

/// The id a ciphertext is tagged with: a hash of the key, never the key.
#[must_use]
pub fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new_with_prefix(b"hookrelay encryption key id\0")
        .chain_update(key)
        .finalize();
    hex::encode(&digest[..8])
}

/// A secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Why a stored secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "it was encrypted with key {0}, which is neither delivery.encryption_key nor one of delivery.previous_encryption_keys"
    )]
    UnknownKey(String),
    #[error("it does not decrypt with key {0} (corrupted, or moved from another row)")]
    Corrupt(String),
}

/// The current encryption key and the previous ones.
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The file a generated key lives in, next to the database.
pub const GENERATED_KEY_FILE: &str = "encryption.key";

impl Keyring {
    /// A keyring from raw keys.
    #[must_use]
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        Self {
            current: Key::new(current),
            previous: previous.iter().map(Key::new).collect(),
        }
    }

    /// The keyring `config` describes. Without `delivery.encryption_key`, the key in
    /// `<db dir>/encryption.key` is used, generated (mode 0600) with a warning if missing —
    /// but only for a database that holds no sealed value (`stored`): a lost key file must not
    /// silently become a new key.
    ///
    /// # Errors
    /// When a key is malformed, the generated key file cannot be read or written, or it is
    /// missing while the database holds sealed values.
    pub fn from_config(config: &Config, stored: &SealedInventory) -> anyhow::Result<Self> {
        let keyring = Self::from_config_unchecked(config, stored)?;
        keyring.check_covers(&stored.key_ids)?;
        Ok(keyring)
    }

    /// As [`Keyring::from_config`], without refusing key ids it lacks (`keys reencrypt` names
    /// each value it cannot open instead).
    ///
    /// # Errors
    /// As [`Keyring::from_config`], except for unknown key ids.
    pub fn from_config_unchecked(
        config: &Config,
        stored: &SealedInventory,
    ) -> anyhow::Result<Self> {
        let previous = config
            .delivery
            .previous_encryption_keys
            .iter()
            .map(|k| {
                parse_encryption_key(k.expose())
                    .map_err(|m| anyhow::anyhow!("delivery.previous_encryption_keys: {m}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let current = match &config.delivery.encryption_key {
            Some(k) => parse_encryption_key(k.expose())
                .map_err(|m| anyhow::anyhow!("delivery.encryption_key: {m}"))?,
            None => {
                let path = config.database_dir().join(GENERATED_KEY_FILE);
                if !path.exists() && !stored.key_ids.is_empty() {
                    anyhow::bail!(
                        "{} is missing, but the database holds secrets encrypted with key {}: \
                         restore that file from where you keep it with your backups (or set \
                         delivery.encryption_key to that key); hookrelay will not replace it with \
                         a new key, which could not decrypt them",
                        path.display(),
                        stored.key_ids.join(", ")
                    );
                }
                load_or_generate(&path)?
            }
        };
        Ok(Self::new(&current, &previous))
    }

    /// The id of the current key.
    #[must_use]
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `secret` for the row `aad` (`<webhook id>:<seq>`) with the current key.
    ///
    /// # Errors
    /// When the OS RNG fails.
    pub fn seal(&self, secret: &SigningSecret, aad: &str) -> anyhow::Result<Sealed> {
        self.seal_bytes(secret.bytes(), aad)
    }

    /// Encrypts any secret value (a header value, a source secret) for `aad` with the current key.
    ///
    /// # Errors
    /// When the OS RNG fails.
    pub fn seal_bytes(&self, plain: &[u8], aad: &str) -> anyhow::Result<Sealed> {
        let mut nonce = [0u8; 12];
        rand::rngs::SysRng
            .try_fill_bytes(&mut nonce)
            .map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encrypting a secret failed"))?;
        Ok(Sealed {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypts a stored signing secret with the key it names.
    ///
    /// # Errors
    /// [`OpenError`] when no configured key has that id or the ciphertext does not authenticate.
    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<SigningSecret, OpenError> {
        let plain = self.open_bytes(sealed, aad)?;
        let bytes: [u8; SECRET_LEN] = plain
            .try_into()
            .map_err(|_| OpenError::Corrupt(sealed.key_id.clone()))?;
        Ok(SigningSecret(bytes))
    }

    /// Decrypts any sealed value with the key it names.
    ///
    /// # Errors
    /// [`OpenError`] when no configured key has that id or the ciphertext does not authenticate.
    pub fn open_bytes(&self, sealed: &Sealed, aad: &str) -> Result<Vec<u8>, OpenError> {
        let key = self
            .find(&sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; 12] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| OpenError::Corrupt(key.id.clone()))?;
        key.cipher
            .decrypt(
                (&nonce).into(),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Corrupt(key.id.clone()))
    }

    fn find(&self, key_id: &str) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
    }

    /// Whether a configured key (current or previous) has id `key_id`.
    #[must_use]
    pub fn knows(&self, key_id: &str) -> bool {
        self.find(key_id).is_some()
    }

    /// Refuses to run on a database holding values sealed with keys this keyring lacks: the
    /// first delivery would otherwise disable every webhook.
    ///
    /// # Errors
    /// Names every unknown key id and how to fix it.
    pub fn check_covers(&self, key_ids: &[String]) -> anyhow::Result<()> {
        let unknown: Vec<&str> = key_ids
            .iter()
            .map(String::as_str)
            .filter(|id| !self.knows(id))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "the database holds secrets encrypted with key {} but no configured key has that id \
             (the current key is {}): set delivery.encryption_key to that key, or list it in \
             delivery.previous_encryption_keys — restore the encryption.key file that belongs to \
             this database if it was generated",
            unknown.join(", "),
            self.current.id
        )
    }
}

/// Which key ids the sealed values of a database were made with, for [`Keyring::from_config`].
#[derive(Debug, Default, Clone)]
pub struct SealedInventory {
    pub key_ids: Vec<String>,
}

fn load_or_generate(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return parse_encryption_key(text.trim())
            .map_err(|m| anyhow::anyhow!("{}: {m}", path.display()));
    }
    let mut key = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut key)
        .map_err(|e| anyhow::anyhow!("the OS random number generator failed: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private(path, format!("{}\n", hex::encode(key)).as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "delivery.encryption_key is not set: generated a key for webhook secrets at rest. Back this \
         file up with the database (secrets cannot be read without it), or set the key in the config"
    );
    Ok(key)
}

/// Creates `path` (never replacing a file) with `content`, readable by its owner only (0600), and
/// syncs it.
///
/// # Errors
/// When the file exists or cannot be written.
pub fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content)
        .with_context(|| format!("writing {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_show_two_forms_of_the_same_bytes() {
        let s = SigningSecret::from_bytes(core::array::from_fn(|i| u8::try_from(i).unwrap_or(0)));
        assert_eq!(
            s.hex(),
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        assert_eq!(
            s.whsec(),
            "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        );
        assert_eq!(format!("{s:?}"), "SigningSecret([redacted])");
        let g = SigningSecret::generate().expect("rng");
        assert_eq!(g.hex().len(), 64);
        assert_ne!(g, SigningSecret::generate().expect("rng"));
    }

    #[test]
    fn seal_and_open_with_current_and_previous_keys() {
        let old = Keyring::new(&[1; 32], &[]);
        let secret = SigningSecret::generate().expect("rng");
        let sealed = old.seal(&secret, "wh_1:1").expect("seal");
        assert!(
            !sealed.ciphertext.windows(32).any(|w| w == secret.bytes()),
            "no plaintext at rest"
        );
        assert_eq!(old.open(&sealed, "wh_1:1"), Ok(secret.clone()));
        assert!(
            matches!(old.open(&sealed, "wh_2:1"), Err(OpenError::Corrupt(_))),
            "bound to its row"
        );

        let rotated = Keyring::new(&[2; 32], &[[1; 32]]);
        assert_eq!(rotated.open(&sealed, "wh_1:1"), Ok(secret.clone()));
        let resealed = rotated.seal(&secret, "wh_1:1").expect("seal");
        assert_eq!(resealed.key_id, rotated.current_id());
        assert_ne!(resealed.nonce, sealed.nonce);

        let other = Keyring::new(&[3; 32], &[]);
        assert!(matches!(
            other.open(&sealed, "wh_1:1"),
            Err(OpenError::UnknownKey(_))
        ));
    }
}
