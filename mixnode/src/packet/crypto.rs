//! The per-layer key schedule: one X25519 between the layer's ephemeral key
//! and the hop's static key, then HKDF-SHA256 (salt = ephemeral public key ‖
//! hop public key) expanded once into the AES-256-GCM key and the 16-byte
//! replay tag. The hop's `LAYER_OVERHEAD` bytes of padding are that AES-GCM
//! key's keystream under nonce 1 (the layer itself uses nonce 0), which is
//! cheaper than four more HMAC blocks. Every primitive comes from aws-lc-rs.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use aws_lc_rs::hkdf;
use zeroize::Zeroize;

use super::{KEY_LEN, LAYER_OVERHEAD, TAG_LEN};

/// HKDF info label: one expansion yields the AES-256-GCM key (32 bytes) and
/// the replay tag (16), in order. At most 22 bytes keeps each HMAC block of
/// the expansion to one compression per pass.
pub(crate) const INFO_LAYER: &[u8] = b"fog-mixnode/v1 layer";
const OKM_LEN: usize = 32 + 16;
const _: () = assert!(INFO_LAYER.len() <= 22);

/// Nonce of the padding keystream (the layer's own message uses nonce 0).
const PADDING_NONCE: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// Everything one layer's shared secret yields.
pub(crate) struct LayerKeys {
    pub aead: LessSafeKey,
    pub padding: [u8; LAYER_OVERHEAD],
    pub replay_tag: [u8; 16],
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[u8], out: &mut [u8]) {
    prk.expand(&[info], OkmLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 output below 255 blocks cannot fail");
}

/// HKDF over one X25519 shared secret, bound to both public keys.
pub(crate) fn derive_layer_keys(
    shared_secret: &[u8],
    ephemeral_public: &[u8; KEY_LEN],
    hop_public: &[u8; KEY_LEN],
) -> LayerKeys {
    let mut salt = [0u8; 2 * KEY_LEN];
    salt[..KEY_LEN].copy_from_slice(ephemeral_public);
    salt[KEY_LEN..].copy_from_slice(hop_public);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared_secret);

    let mut okm = [0u8; OKM_LEN];
    expand(&prk, INFO_LAYER, &mut okm);
    let aead = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &okm[..32]).expect("32-byte AES-256 key is valid"),
    );
    let mut replay_tag = [0u8; 16];
    replay_tag.copy_from_slice(&okm[32..48]);
    okm.zeroize();
    // GCM is CTR mode: sealing zeros yields the keystream (tag discarded).
    let mut padding = [0u8; LAYER_OVERHEAD];
    let _padding_tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(PADDING_NONCE),
            Aad::empty(),
            &mut padding,
        )
        .expect("AES-GCM seal of 120 bytes cannot fail");
    LayerKeys {
        aead,
        padding,
        replay_tag,
    }
}

/// X25519(`own`, `peer`) → layer keys for the layer with these two public
/// keys. `None` when either key makes the shared secret all zeros.
pub(crate) fn agree_layer_keys(
    own: &PrivateKey,
    peer: &[u8; KEY_LEN],
    ephemeral_public: &[u8; KEY_LEN],
    hop_public: &[u8; KEY_LEN],
) -> Option<LayerKeys> {
    let peer = UnparsedPublicKey::new(&agreement::X25519, peer);
    agreement::agree(own, peer, (), |shared| {
        Ok(derive_layer_keys(shared, ephemeral_public, hop_public))
    })
    .ok()
}

/// The hop's side: X25519(static secret, layer ephemeral key) → layer keys.
/// `None` when the ephemeral key is a low-order point (all-zero secret).
pub(crate) fn hop_layer_keys(
    secret: &PrivateKey,
    hop_public: &[u8; KEY_LEN],
    ephemeral_public: &[u8; KEY_LEN],
) -> Option<LayerKeys> {
    agree_layer_keys(secret, ephemeral_public, ephemeral_public, hop_public)
}

/// The sender's side: a fresh ephemeral key for a layer → (its public key,
/// the layer keys). `None` when the hop's public key is a low-order point.
pub(crate) fn sender_layer_keys(hop_public: &[u8; KEY_LEN]) -> Option<([u8; KEY_LEN], LayerKeys)> {
    let ephemeral = PrivateKey::generate(&agreement::X25519).ok()?;
    let mut ephemeral_public = [0u8; KEY_LEN];
    ephemeral_public.copy_from_slice(ephemeral.compute_public_key().ok()?.as_ref());
    let keys = agree_layer_keys(&ephemeral, hop_public, &ephemeral_public, hop_public)?;
    Some((ephemeral_public, keys))
}

/// Every layer key is used for exactly one message, so the nonce is fixed.
pub(crate) fn layer_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; 12])
}

/// Encrypts `body` in place; the ephemeral public key is the associated data.
pub(crate) fn seal_layer(
    keys: &LayerKeys,
    ephemeral_public: &[u8; KEY_LEN],
    body: &mut [u8],
) -> [u8; TAG_LEN] {
    let tag = keys
        .aead
        .seal_in_place_separate_tag(layer_nonce(), Aad::from(ephemeral_public), body)
        .expect("AES-GCM seal of a packet-sized buffer cannot fail");
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Verifies and decrypts `body` in place; `false` if the tag is wrong.
pub(crate) fn open_layer(
    keys: &LayerKeys,
    ephemeral_public: &[u8; KEY_LEN],
    tag: &[u8; TAG_LEN],
    body: &mut [u8],
) -> bool {
    keys.aead
        .open_in_place_separate_tag(layer_nonce(), Aad::from(ephemeral_public), tag, body)
        .is_ok()
}
