//! Node key pairs: an X25519 static secret (held as an aws-lc-rs private key,
//! parsed once) and its public key, which prints and parses as 64 lowercase
//! hex characters.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::agreement::{self, PrivateKey};
use zeroize::Zeroize;

use super::KEY_LEN;

/// An X25519 static secret key.
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    pub(crate) key: PrivateKey,
    public: PublicKey,
}

/// An X25519 public key. `Display`/`FromStr` use lowercase hex (64 chars).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

/// A public key string that is not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("public key must be 64 hex characters (32 bytes)")]
pub struct ParseKeyError;

impl SecretKey {
    /// A fresh key from the system RNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut bytes).expect("system RNG failed");
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// The key from its 32 raw bytes (any 32 bytes are a valid X25519 secret).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let key = PrivateKey::from_private_key(&agreement::X25519, &bytes)
            .expect("aws-lc accepts every 32-byte X25519 secret");
        let public = key
            .compute_public_key()
            .expect("X25519 public key computation cannot fail");
        let mut pk = [0u8; KEY_LEN];
        pk.copy_from_slice(public.as_ref());
        SecretKey {
            bytes,
            key,
            public: PublicKey(pk),
        }
    }

    /// The 32 raw bytes (store them with mode 0600).
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.bytes
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        SecretKey::from_bytes(self.bytes)
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public)
    }
}

impl PublicKey {
    /// A 64-bit fingerprint (first 8 bytes, big-endian): usable as the
    /// replay filter's epoch, since tags are bound to this key.
    pub fn fingerprint(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 2 * KEY_LEN || !s.is_ascii() {
            return Err(ParseKeyError);
        }
        let mut out = [0u8; KEY_LEN];
        for (i, chunk) in s.as_bytes().chunks_exact(2).enumerate() {
            let hi = hex_digit(chunk[0]).ok_or(ParseKeyError)?;
            let lo = hex_digit(chunk[1]).ok_or(ParseKeyError)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(PublicKey(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
