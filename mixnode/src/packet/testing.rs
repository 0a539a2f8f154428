//! Helpers for fuzzing and tests outside this crate: seal an arbitrary
//! plaintext as a correctly authenticated layer for a hop, so a harness can
//! reach the routing parser behind the tag check (random bytes never pass
//! AES-GCM). Not part of the stable API.

use super::build::{BODY_LEN, HEADER_LEN};
use super::crypto::{agree_layer_keys, seal_layer};
use super::{PublicKey, SecretKey, KEY_LEN, PACKET_LEN};

/// Length of the plaintext a layer carries (`PACKET_LEN` − key − tag).
pub const LAYER_PLAINTEXT_LEN: usize = BODY_LEN;

/// A `PACKET_LEN`-byte packet whose layer for `hop` (sealed with the
/// `ephemeral` key pair) decrypts to `plaintext`, zero-padded or truncated to
/// `LAYER_PLAINTEXT_LEN`. Its first 72 bytes are the routing block. `None`
/// if `hop` is a low-order point.
pub fn seal_raw_layer(hop: &PublicKey, ephemeral: &SecretKey, plaintext: &[u8]) -> Option<Vec<u8>> {
    let ephemeral_public = ephemeral.public_key().0;
    let keys = agree_layer_keys(&ephemeral.key, &hop.0, &ephemeral_public, &hop.0)?;
    let mut packet = vec![0u8; PACKET_LEN];
    let n = plaintext.len().min(BODY_LEN);
    packet[HEADER_LEN..HEADER_LEN + n].copy_from_slice(&plaintext[..n]);
    let tag = seal_layer(&keys, &ephemeral_public, &mut packet[HEADER_LEN..]);
    packet[..KEY_LEN].copy_from_slice(&ephemeral_public);
    packet[KEY_LEN..HEADER_LEN].copy_from_slice(&tag);
    Some(packet)
}
