//! Per-hop processing: one X25519, HKDF, one AES-256-GCM open over the whole
//! packet, then strip the layer and append the hop's derived padding so the
//! next packet is again `PACKET_LEN` bytes. `unwrap_in_place` does this in
//! the caller's buffer without allocating the packet; `unwrap_packet` is the
//! owning convenience wrapper.

use std::ops::Range;
use std::time::Duration;

use super::build::HEADER_LEN;
use super::crypto::{hop_layer_keys, open_layer};
use super::routing::Routing;
use super::{PacketError, ReplayTag, SecretKey, KEY_LEN, LAYER_OVERHEAD, PACKET_LEN, TAG_LEN};

/// What a hop must do with an authenticated packet. Check `replay_tag`
/// against the node's `ReplayFilter` before acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwrapped {
    pub replay_tag: ReplayTag,
    pub action: Action,
}

/// The hop's instruction, with the owned next packet or payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hold for `delay`, then send `packet` to the next mix.
    Relay {
        next_address: String,
        delay: Duration,
        packet: Vec<u8>,
    },
    /// This node is the exit: hold for `delay`, then send `packet` to the
    /// destination.
    Deliver {
        destination: String,
        delay: Duration,
        packet: Vec<u8>,
    },
    /// This node is the destination: the payload is readable only here.
    Final { payload: Vec<u8> },
}

/// `unwrap_in_place`'s result: the buffer now holds the next packet (relay,
/// deliver) or the payload at `payload` (final).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnwrappedInPlace {
    pub replay_tag: ReplayTag,
    pub action: InPlaceAction,
}

/// Like [`Action`], but the packet or payload stays in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InPlaceAction {
    /// The buffer is the next packet: hold for `delay`, send to `next_address`.
    Relay {
        next_address: String,
        delay: Duration,
    },
    /// The buffer is the packet for the destination: hold for `delay`, send
    /// to `destination`.
    Deliver {
        destination: String,
        delay: Duration,
    },
    /// `buffer[payload]` is the user payload.
    Final { payload: Range<usize> },
}

/// Processes one layer in the caller's `PACKET_LEN`-byte buffer. On error
/// the buffer's contents are unspecified (drop the packet).
pub fn unwrap_in_place(
    secret: &SecretKey,
    packet: &mut [u8],
) -> Result<UnwrappedInPlace, PacketError> {
    if packet.len() != PACKET_LEN {
        return Err(PacketError::WrongLength {
            expected: PACKET_LEN,
            actual: packet.len(),
        });
    }
    let mut ephemeral = [0u8; KEY_LEN];
    ephemeral.copy_from_slice(&packet[..KEY_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&packet[KEY_LEN..HEADER_LEN]);

    let keys = hop_layer_keys(&secret.key, &secret.public_key().0, &ephemeral)
        .ok_or(PacketError::Authentication)?;
    if !open_layer(&keys, &ephemeral, &tag, &mut packet[HEADER_LEN..]) {
        return Err(PacketError::Authentication);
    }
    let replay_tag = ReplayTag(keys.replay_tag);
    let routing = Routing::decode(&packet[HEADER_LEN..LAYER_OVERHEAD])?;
    let action = match routing {
        Routing::Final { payload_len } => InPlaceAction::Final {
            payload: LAYER_OVERHEAD..LAYER_OVERHEAD + payload_len,
        },
        Routing::Relay {
            next_address,
            delay,
        } => {
            shift_and_pad(packet, &keys.padding);
            InPlaceAction::Relay {
                next_address,
                delay,
            }
        }
        Routing::Deliver { destination, delay } => {
            shift_and_pad(packet, &keys.padding);
            InPlaceAction::Deliver { destination, delay }
        }
    };
    Ok(UnwrappedInPlace { replay_tag, action })
}

/// Drops the layer's `LAYER_OVERHEAD` bytes from the front and appends the
/// hop's padding at the end.
fn shift_and_pad(packet: &mut [u8], padding: &[u8; LAYER_OVERHEAD]) {
    packet.copy_within(LAYER_OVERHEAD.., 0);
    packet[PACKET_LEN - LAYER_OVERHEAD..].copy_from_slice(padding);
}

/// Processes one layer of `packet` (which must be `PACKET_LEN` bytes) with
/// the node's key, returning an owned next packet or payload.
pub fn unwrap_packet(secret: &SecretKey, packet: &[u8]) -> Result<Unwrapped, PacketError> {
    if packet.len() != PACKET_LEN {
        return Err(PacketError::WrongLength {
            expected: PACKET_LEN,
            actual: packet.len(),
        });
    }
    let mut buffer = packet.to_vec();
    let UnwrappedInPlace { replay_tag, action } = unwrap_in_place(secret, &mut buffer)?;
    let action = match action {
        InPlaceAction::Relay {
            next_address,
            delay,
        } => Action::Relay {
            next_address,
            delay,
            packet: buffer,
        },
        InPlaceAction::Deliver { destination, delay } => Action::Deliver {
            destination,
            delay,
            packet: buffer,
        },
        InPlaceAction::Final { payload } => Action::Final {
            payload: buffer[payload].to_vec(),
        },
    };
    Ok(Unwrapped { replay_tag, action })
}
