//! Packet construction (the sender's side). The sender draws one ephemeral
//! key per layer, derives every layer's keys, precomputes the "filler" (the
//! tail each hop will see after earlier hops appended their padding), then
//! wraps the layers from the destination outwards so every tag verifies.

use std::time::Duration;

use aws_lc_rs::aead::Aad;

use super::crypto::{layer_nonce, seal_layer, sender_layer_keys, LayerKeys};
use super::routing::{check_address, delay_micros, Routing};
use super::{
    PacketError, PublicKey, KEY_LEN, LAYER_OVERHEAD, MAX_HOPS, PACKET_LEN, PAYLOAD_LEN,
    ROUTING_LEN, TAG_LEN,
};

/// Bytes before a layer's ciphertext: ephemeral public key + tag.
pub(crate) const HEADER_LEN: usize = KEY_LEN + TAG_LEN;
/// Bytes of a layer's ciphertext (everything after the tag).
pub(crate) const BODY_LEN: usize = PACKET_LEN - HEADER_LEN;

/// One element of a route: a mix (or, last, the destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHop {
    /// Where to send the packet for this hop, e.g. `mixnode-2:1789`.
    pub address: String,
    /// The hop's static X25519 public key.
    pub public_key: PublicKey,
    /// How long this hop holds the packet: every mix, the exit included,
    /// holds it this long (ignored for the destination: see `FORMAT.md`).
    pub delay: Duration,
}

/// Builds a `PACKET_LEN`-byte packet for `route` (mixes in order, then the
/// destination as the last element) carrying `payload` (at most
/// `PAYLOAD_LEN` bytes; its length travels in the destination's layer).
/// Send the result to `route[0].address`.
pub fn build_packet(route: &[RouteHop], payload: &[u8]) -> Result<Vec<u8>, PacketError> {
    if route.is_empty() {
        return Err(PacketError::EmptyRoute);
    }
    if route.len() > MAX_HOPS {
        return Err(PacketError::TooManyHops);
    }
    if payload.len() > PAYLOAD_LEN {
        return Err(PacketError::PayloadTooLarge);
    }
    for hop in route {
        check_address(&hop.address)?;
        delay_micros(hop.delay)?;
    }

    let hops = route.len();
    let layers: Vec<([u8; KEY_LEN], LayerKeys)> = route
        .iter()
        .map(|hop| sender_layer_keys(&hop.public_key.0).ok_or(PacketError::InvalidPublicKey))
        .collect::<Result<_, _>>()?;

    // Filler: after hop j, the last (j+1)·LAYER_OVERHEAD bytes of the packet
    // are fully determined by hops 0..=j's padding and keystreams.
    let mut filler: Vec<u8> = Vec::with_capacity((MAX_HOPS - 1) * LAYER_OVERHEAD);
    for (ephemeral, keys) in &layers[..hops - 1] {
        let stream = keystream(keys, ephemeral);
        let tail = &stream[BODY_LEN - filler.len()..];
        filler.iter_mut().zip(tail).for_each(|(f, k)| *f ^= k);
        filler.extend_from_slice(&keys.padding);
    }

    // Innermost layer: the destination's routing block, the payload, zeros,
    // and a tail chosen so its ciphertext equals the filler.
    let mut packet = vec![0u8; PACKET_LEN];
    let (ephemeral, keys) = &layers[hops - 1];
    {
        let body = &mut packet[HEADER_LEN..];
        Routing::Final {
            payload_len: payload.len(),
        }
        .encode(&mut body[..ROUTING_LEN]);
        body[ROUTING_LEN..ROUTING_LEN + payload.len()].copy_from_slice(payload);
        if !filler.is_empty() {
            let stream = keystream(keys, ephemeral);
            let start = BODY_LEN - filler.len();
            for (i, f) in filler.iter().enumerate() {
                body[start + i] = f ^ stream[start + i];
            }
        }
    }
    finish_layer(&mut packet, ephemeral, keys);

    // Wrap outwards: layer j = routing_j ‖ first PACKET_LEN − LAYER_OVERHEAD
    // bytes of layer j+1 (the rest is what hop j regenerates as padding).
    for j in (0..hops - 1).rev() {
        let routing = if j == hops - 2 {
            Routing::Deliver {
                destination: route[j + 1].address.clone(),
                delay: route[j].delay,
            }
        } else {
            Routing::Relay {
                next_address: route[j + 1].address.clone(),
                delay: route[j].delay,
            }
        };
        packet.copy_within(..PACKET_LEN - LAYER_OVERHEAD, LAYER_OVERHEAD);
        routing.encode(&mut packet[HEADER_LEN..LAYER_OVERHEAD]);
        let (ephemeral, keys) = &layers[j];
        finish_layer(&mut packet, ephemeral, keys);
    }
    Ok(packet)
}

/// Seals `packet[HEADER_LEN..]` in place and writes the ephemeral key and tag.
fn finish_layer(packet: &mut [u8], ephemeral: &[u8; KEY_LEN], keys: &LayerKeys) {
    let tag = seal_layer(keys, ephemeral, &mut packet[HEADER_LEN..]);
    packet[..KEY_LEN].copy_from_slice(ephemeral);
    packet[KEY_LEN..HEADER_LEN].copy_from_slice(&tag);
}

/// The AES-GCM keystream a layer's body is XORed with (GCM is CTR mode, so
/// sealing zeros yields it; the tag of that dummy seal is discarded).
fn keystream(keys: &LayerKeys, ephemeral: &[u8; KEY_LEN]) -> Vec<u8> {
    let mut stream = vec![0u8; BODY_LEN];
    let _dummy_tag = keys
        .aead
        .seal_in_place_separate_tag(layer_nonce(), Aad::from(ephemeral), &mut stream)
        .expect("AES-GCM seal of a packet-sized buffer cannot fail");
    stream
}
