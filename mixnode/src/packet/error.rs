//! Errors from building or unwrapping packets, each with a short stable
//! `reason()` label for metrics (`mixnet_ingress_dropped_total{reason=...}`).

use super::{ADDRESS_LEN, MAX_HOPS, PAYLOAD_LEN};

/// Why a packet could not be built or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The buffer is not `PACKET_LEN` bytes.
    #[error("packet is {actual} bytes, expected {expected}")]
    WrongLength { expected: usize, actual: usize },
    /// The layer's tag did not verify: wrong key, a flipped bit anywhere, or
    /// an ephemeral key that yields no shared secret.
    #[error("packet failed authentication (wrong key or modified in transit)")]
    Authentication,
    /// Authenticated, but the routing block is not valid (a buggy sender).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The route is longer than `MAX_HOPS` layers.
    #[error("route has too many hops (at most {MAX_HOPS} layers, destination included)")]
    TooManyHops,
    /// The route is empty (it needs at least the destination).
    #[error("route is empty: it needs at least the destination")]
    EmptyRoute,
    /// An address is empty or longer than `ADDRESS_LEN` bytes.
    #[error("address is empty or longer than {ADDRESS_LEN} bytes")]
    AddressTooLong,
    /// The payload is longer than `PAYLOAD_LEN` bytes.
    #[error("payload is larger than {PAYLOAD_LEN} bytes")]
    PayloadTooLarge,
    /// A hop delay does not fit the 32-bit microsecond field (~71 minutes).
    #[error("hop delay is longer than u32::MAX microseconds (~71 minutes)")]
    DelayTooLong,
    /// A route public key is a low-order point (no shared secret possible).
    #[error("route public key is invalid (low-order point)")]
    InvalidPublicKey,
}

impl PacketError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PacketError::WrongLength { .. } => "wrong_length",
            PacketError::Authentication => "authentication",
            PacketError::Malformed(_) => "malformed",
            PacketError::TooManyHops => "too_many_hops",
            PacketError::EmptyRoute => "empty_route",
            PacketError::AddressTooLong => "address_too_long",
            PacketError::PayloadTooLarge => "payload_too_large",
            PacketError::DelayTooLong => "delay_too_long",
            PacketError::InvalidPublicKey => "invalid_public_key",
        }
    }
}
