//! The per-layer routing block (`ROUTING_LEN` = 72 bytes, plaintext only
//! after the layer's tag verified): what the hop does next.
//!
//! ```text
//! 0      kind: 1 = relay, 2 = deliver (this hop is the exit), 3 = final
//! 1      address length in bytes (1..=64; 0 for final)
//! 2..4   payload length, u16 big-endian (final only, else 0)
//! 4..8   delay in microseconds, u32 big-endian (relay and deliver, else 0)
//! 8..72  address, UTF-8, zero-padded
//! ```

use std::time::Duration;

use super::{PacketError, ADDRESS_LEN, PAYLOAD_LEN, ROUTING_LEN};

const KIND_RELAY: u8 = 1;
const KIND_DELIVER: u8 = 2;
const KIND_FINAL: u8 = 3;

/// A decoded routing block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Routing {
    Relay {
        next_address: String,
        delay: Duration,
    },
    Deliver {
        destination: String,
        delay: Duration,
    },
    Final {
        payload_len: usize,
    },
}

/// Checks an address for the wire (non-empty, at most `ADDRESS_LEN` bytes).
pub(crate) fn check_address(address: &str) -> Result<(), PacketError> {
    if address.is_empty() || address.len() > ADDRESS_LEN {
        return Err(PacketError::AddressTooLong);
    }
    Ok(())
}

/// Delay in whole microseconds, if it fits the u32 field.
pub(crate) fn delay_micros(delay: Duration) -> Result<u32, PacketError> {
    u32::try_from(delay.as_micros()).map_err(|_| PacketError::DelayTooLong)
}

impl Routing {
    /// Writes the block into `out` (exactly `ROUTING_LEN` bytes). Callers
    /// validated addresses, delays and lengths beforehand.
    pub(crate) fn encode(&self, out: &mut [u8]) {
        debug_assert_eq!(out.len(), ROUTING_LEN);
        out.fill(0);
        let (kind, address, payload_len, delay_us) = match self {
            Routing::Relay {
                next_address,
                delay,
            } => (
                KIND_RELAY,
                next_address.as_str(),
                0u16,
                delay_micros(*delay).unwrap_or(u32::MAX),
            ),
            Routing::Deliver { destination, delay } => (
                KIND_DELIVER,
                destination.as_str(),
                0,
                delay_micros(*delay).unwrap_or(u32::MAX),
            ),
            Routing::Final { payload_len } => (KIND_FINAL, "", *payload_len as u16, 0),
        };
        out[0] = kind;
        out[1] = address.len() as u8;
        out[2..4].copy_from_slice(&payload_len.to_be_bytes());
        out[4..8].copy_from_slice(&delay_us.to_be_bytes());
        out[8..8 + address.len()].copy_from_slice(address.as_bytes());
    }

    /// Parses a decrypted block, rejecting anything a correct sender would
    /// not produce (the encoding is canonical).
    pub(crate) fn decode(block: &[u8]) -> Result<Routing, PacketError> {
        if block.len() != ROUTING_LEN {
            return Err(PacketError::Malformed("routing block has the wrong size"));
        }
        let kind = block[0];
        let addr_len = block[1] as usize;
        let payload_len = u16::from_be_bytes([block[2], block[3]]) as usize;
        let delay_us = u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
        if addr_len > ADDRESS_LEN {
            return Err(PacketError::Malformed("address length exceeds ADDRESS_LEN"));
        }
        let address_field = &block[8..];
        if address_field[addr_len..].iter().any(|&b| b != 0) {
            return Err(PacketError::Malformed("non-zero bytes after the address"));
        }
        let address = || -> Result<String, PacketError> {
            if addr_len == 0 {
                return Err(PacketError::Malformed("empty address"));
            }
            std::str::from_utf8(&address_field[..addr_len])
                .map(str::to_owned)
                .map_err(|_| PacketError::Malformed("address is not UTF-8"))
        };
        match kind {
            KIND_RELAY if payload_len == 0 => Ok(Routing::Relay {
                next_address: address()?,
                delay: Duration::from_micros(u64::from(delay_us)),
            }),
            KIND_DELIVER if payload_len == 0 => Ok(Routing::Deliver {
                destination: address()?,
                delay: Duration::from_micros(u64::from(delay_us)),
            }),
            KIND_FINAL if addr_len == 0 && delay_us == 0 && payload_len <= PAYLOAD_LEN => {
                Ok(Routing::Final { payload_len })
            }
            KIND_RELAY | KIND_DELIVER | KIND_FINAL => Err(PacketError::Malformed(
                "routing fields do not match the kind",
            )),
            _ => Err(PacketError::Malformed("unknown routing kind")),
        }
    }
}
