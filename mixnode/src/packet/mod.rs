//! The betanet packet format: fixed-size layered packets that cost exactly one
//! X25519 Diffie-Hellman per hop (Outfox-style: every layer carries its own
//! ephemeral public key, so there is no blinding step). Each layer is one
//! AES-256-GCM ciphertext over the whole rest of the packet, keyed by
//! HKDF-SHA256 from the hop's shared secret, so a bit flipped anywhere is
//! rejected by the first hop that sees it. After stripping its layer a hop
//! appends deterministic padding derived from its shared secret; the sender
//! precomputes that padding so every later tag verifies and the packet keeps
//! `PACKET_LEN` bytes at every hop. `mixnode/FORMAT.md` documents every byte.

mod build;
mod crypto;
mod error;
mod keys;
mod routing;
#[doc(hidden)]
pub mod testing;
mod unwrap;

#[cfg(test)]
mod spec_tests;
#[cfg(test)]
mod tests;

pub use build::{build_packet, RouteHop};
pub use error::PacketError;
pub use keys::{ParseKeyError, PublicKey, SecretKey};
pub use unwrap::{
    unwrap_in_place, unwrap_packet, Action, InPlaceAction, Unwrapped, UnwrappedInPlace,
};

/// User payload bytes a packet carries (at most; shorter payloads are
/// length-prefixed in the destination's routing block and zero-padded).
pub const PAYLOAD_LEN: usize = 2048;

/// Layers a packet can carry, the destination's layer included: a route is
/// 1 to `MAX_HOPS` elements (e.g. 3 mixes + destination = 4, or 4 mixes +
/// destination = 5).
pub const MAX_HOPS: usize = 5;

/// Maximum bytes of a routing address (UTF-8, e.g. `mixnode-2:1789`).
pub const ADDRESS_LEN: usize = 64;
const _: () = assert!(ADDRESS_LEN >= 64 && ADDRESS_LEN <= u8::MAX as usize);

/// X25519 public key bytes (the per-layer ephemeral key on the wire).
pub const KEY_LEN: usize = 32;

/// AES-256-GCM tag bytes.
pub const TAG_LEN: usize = 16;

/// Plaintext routing block per layer: kind (1) + address length (1) +
/// payload length (2) + delay in microseconds (4) + address (`ADDRESS_LEN`).
pub const ROUTING_LEN: usize = 8 + ADDRESS_LEN;

/// Bytes one hop strips from the front (and appends as padding at the end):
/// ephemeral key + tag + routing block.
pub const LAYER_OVERHEAD: usize = KEY_LEN + TAG_LEN + ROUTING_LEN;

/// Wire size of every packet at every hop: room for `MAX_HOPS` layers plus
/// the payload (2048 + 5 × 120 = 2648 bytes).
pub const PACKET_LEN: usize = PAYLOAD_LEN + MAX_HOPS * LAYER_OVERHEAD;

/// Replay tag of one processed layer: HKDF output bound to the shared secret
/// and the node's public key, so it is unique per (packet layer, node key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayTag(pub [u8; 16]);
