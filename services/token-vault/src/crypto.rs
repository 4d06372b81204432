//! Encryption at rest: AES-256-GCM (`ring::aead`) under a key ring. Each write gets a fresh
//! random 96-bit nonce; the additional authenticated data binds a ciphertext to its record
//! `(user, provider, version)`, so a ciphertext copied onto another user, another provider or
//! another version of the same record does not decrypt. Plain Rust, no I/O.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Why a sealed credential could not be opened (or a key ring built). Messages never include
/// key material, plaintext or ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("credential is encrypted under key id {0:?}, which is not in the key ring")]
    UnknownKey(String),
    #[error(
        "credential does not decrypt: the ciphertext was altered or belongs to another record (user, provider or version)"
    )]
    Decrypt,
    #[error(
        "credential refused: the row is older than the last delete of its record (restored from before it)"
    )]
    Stale,
    #[error("sealed credential is malformed ({0})")]
    Malformed(&'static str),
    #[error("{0}")]
    KeyRing(String),
}

/// The record a ciphertext belongs to; authenticated, not encrypted.
#[derive(Debug, Clone, Copy)]
pub struct RecordBinding<'a> {
    pub user_id: &'a str,
    pub provider: &'a str,
    pub version: i64,
}

impl RecordBinding<'_> {
    /// Length-prefixed fields, so that ("ab","c") and ("a","bc") differ.
    fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.user_id.len() + self.provider.len());
        out.extend_from_slice(b"mcpauth-vault/v1");
        for part in [self.user_id.as_bytes(), self.provider.as_bytes()] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// A sealed value: the id of the key that sealed it and `nonce ‖ ciphertext ‖ tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sealed {{ key_id: {:?}, {} bytes }}",
            self.key_id,
            self.blob.len()
        )
    }
}

/// Keys by id; the current key seals, every key opens.
pub struct KeyRing {
    keys: HashMap<String, LessSafeKey>,
    current: String,
    rng: SystemRandom,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        write!(f, "KeyRing {{ current: {:?}, ids: {ids:?} }}", self.current)
    }
}

impl KeyRing {
    /// Builds a ring from `(id, raw 32-byte key)` pairs.
    pub fn new(keys: &[(String, Vec<u8>)], current: &str) -> Result<Self, CryptoError> {
        let mut map = HashMap::new();
        for (id, raw) in keys {
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(CryptoError::KeyRing(format!(
                    "key id {id:?}: 1-64 visible ASCII characters"
                )));
            }
            if raw.len() != 32 {
                return Err(CryptoError::KeyRing(format!(
                    "key {id:?}: must be exactly 32 bytes (got {})",
                    raw.len()
                )));
            }
            let key = UnboundKey::new(&AES_256_GCM, raw)
                .map_err(|_| CryptoError::KeyRing(format!("key {id:?}: rejected")))?;
            if map.insert(id.clone(), LessSafeKey::new(key)).is_some() {
                return Err(CryptoError::KeyRing(format!("key id {id:?} appears twice")));
            }
        }
        if current.is_empty() {
            return Err(CryptoError::KeyRing(
                "current_key is required (`token-vault generate-key` makes a key)".into(),
            ));
        }
        if !map.contains_key(current) {
            return Err(CryptoError::KeyRing(format!(
                "current_key {current:?} is not among the keys"
            )));
        }
        Ok(Self {
            keys: map,
            current: current.to_owned(),
            rng: SystemRandom::new(),
        })
    }

    /// Builds a ring from `(id, base64 key)` pairs as configuration gives them.
    pub fn from_base64(keys: &[(String, String)], current: &str) -> Result<Self, CryptoError> {
        let mut raw = Vec::with_capacity(keys.len());
        for (id, b64) in keys {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim()))
                .map_err(|_| CryptoError::KeyRing(format!("key {id:?}: not valid base64")))?;
            raw.push((id.clone(), bytes));
        }
        Self::new(&raw, current)
    }

    /// Id of the key that seals new writes.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Encrypts `plaintext` for `record` under the current key with a fresh random nonce.
    pub fn seal(&self, record: RecordBinding<'_>, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let key = &self.keys[&self.current];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| CryptoError::KeyRing("system randomness unavailable".into()))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(record.aad()),
                &mut blob[NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Decrypt)?;
        blob.extend_from_slice(tag.as_ref());
        Ok(Sealed {
            key_id: self.current.clone(),
            blob,
        })
    }

    /// Decrypts a sealed value of `record`.
    pub fn open(&self, record: RecordBinding<'_>, sealed: &Sealed) -> Result<Vec<u8>, CryptoError> {
        let key = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.blob.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CryptoError::Malformed("too short"));
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed("nonce"))?;
        let mut buf = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(record.aad()), &mut buf)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

/// A new random 256-bit key, base64 (`token-vault generate-key`).
pub fn generate_key() -> String {
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .expect("system randomness");
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// SHA-256 of a string.
pub fn sha256(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses hex (either case); `None` when malformed.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[(&str, u8)], current: &str) -> KeyRing {
        let keys: Vec<(String, Vec<u8>)> = ids
            .iter()
            .map(|(id, b)| ((*id).to_owned(), vec![*b; 32]))
            .collect();
        KeyRing::new(&keys, current).unwrap()
    }

    const ALICE: RecordBinding<'static> = RecordBinding {
        user_id: "alice",
        provider: "github",
        version: 1,
    };

    #[test]
    fn roundtrip_with_fresh_nonces() {
        let r = ring(&[("k1", 1)], "k1");
        let a = r.seal(ALICE, b"secret").unwrap();
        let b = r.seal(ALICE, b"secret").unwrap();
        assert_ne!(a.blob, b.blob, "each write uses a new nonce");
        assert!(!a.blob.windows(6).any(|w| w == b"secret"));
        assert_eq!(r.open(ALICE, &a).unwrap(), b"secret");
        assert_eq!(a.key_id, "k1");
    }

    #[test]
    fn tampering_fails_clearly() {
        let r = ring(&[("k1", 1)], "k1");
        let sealed = r.seal(ALICE, b"secret").unwrap();
        for i in 0..sealed.blob.len() {
            let mut t = sealed.clone();
            t.blob[i] ^= 0x01;
            assert_eq!(r.open(ALICE, &t), Err(CryptoError::Decrypt), "byte {i}");
        }
        let mut short = sealed.clone();
        short.blob.truncate(10);
        assert_eq!(
            r.open(ALICE, &short),
            Err(CryptoError::Malformed("too short"))
        );
    }

    #[test]
    fn wrong_record_does_not_decrypt() {
        let r = ring(&[("k1", 1)], "k1");
        let sealed = r.seal(ALICE, b"secret").unwrap();
        for other in [
            RecordBinding {
                user_id: "bob",
                ..ALICE
            },
            RecordBinding {
                provider: "gitlab",
                ..ALICE
            },
            RecordBinding {
                version: 2,
                ..ALICE
            },
            // Length prefixes: moving bytes between fields changes the AAD.
            RecordBinding {
                user_id: "alicegithub",
                provider: "",
                version: 1,
            },
        ] {
            assert_eq!(r.open(other, &sealed), Err(CryptoError::Decrypt));
        }
        let msg = CryptoError::Decrypt.to_string();
        assert!(msg.contains("another record"), "{msg}");
    }

    #[test]
    fn unknown_key_id_and_rotation() {
        let old = ring(&[("k1", 1)], "k1");
        let sealed = old.seal(ALICE, b"secret").unwrap();
        let both = ring(&[("k1", 1), ("k2", 2)], "k2");
        assert_eq!(both.open(ALICE, &sealed).unwrap(), b"secret");
        let resealed = both.seal(ALICE, b"secret").unwrap();
        assert_eq!(resealed.key_id, "k2");
        let new_only = ring(&[("k2", 2)], "k2");
        assert_eq!(new_only.open(ALICE, &resealed).unwrap(), b"secret");
        let err = new_only.open(ALICE, &sealed).unwrap_err();
        assert_eq!(err, CryptoError::UnknownKey("k1".into()));
        assert!(err.to_string().contains("\"k1\""));
        // The same id with different key material does not open it either.
        let impostor = ring(&[("k1", 9)], "k1");
        assert_eq!(impostor.open(ALICE, &sealed), Err(CryptoError::Decrypt));
    }

    #[test]
    fn key_ring_validation() {
        assert!(KeyRing::new(&[("k1".into(), vec![0; 16])], "k1").is_err());
        assert!(KeyRing::new(&[("k1".into(), vec![0; 32])], "k2").is_err());
        assert!(KeyRing::new(&[("k1".into(), vec![0; 32])], "").is_err());
        assert!(
            KeyRing::new(
                &[("k1".into(), vec![0; 32]), ("k1".into(), vec![1; 32])],
                "k1"
            )
            .is_err()
        );
        let generated = generate_key();
        let r = KeyRing::from_base64(&[("g".into(), generated.clone())], "g").unwrap();
        assert_eq!(r.current_id(), "g");
        assert!(!format!("{r:?}").contains(&generated));
        assert!(KeyRing::from_base64(&[("g".into(), "not base64!".into())], "g").is_err());
    }

    #[test]
    fn hex_roundtrip() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
