//! The `packet_unwrap` fuzz logic, shared by the libFuzzer target and the
//! plain `cargo test` below. Each input is tried twice with a fixed node
//! key: as raw wire bytes (must be rejected without panicking, since random
//! bytes never pass AES-GCM), and as the plaintext of a correctly sealed
//! layer, which reaches the routing parser behind the tag check: there every
//! outcome must be a well-formed action or `Malformed`.

use std::sync::OnceLock;

use mixnode::packet::testing::seal_raw_layer;
use mixnode::packet::{
    unwrap_in_place, unwrap_packet, Action, InPlaceAction, PacketError, SecretKey, PACKET_LEN,
    PAYLOAD_LEN,
};

struct Keys {
    node: SecretKey,
    ephemeral: SecretKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        node: SecretKey::from_bytes([0x42; 32]),
        ephemeral: SecretKey::from_bytes([0x17; 32]),
    })
}

/// One fuzz iteration; panics only on a real bug.
pub fn packet_unwrap(data: &[u8]) {
    let keys = keys();
    match unwrap_packet(&keys.node, data) {
        Err(PacketError::WrongLength { actual, .. }) => assert_ne!(actual, PACKET_LEN),
        Err(PacketError::Authentication) => assert_eq!(data.len(), PACKET_LEN),
        Err(other) => panic!("raw bytes gave {other:?}"),
        Ok(_) => panic!("random bytes authenticated"),
    }

    let mut packet = seal_raw_layer(&keys.node.public_key(), &keys.ephemeral, data)
        .expect("fixed keys are not low-order");
    let owned = unwrap_packet(&keys.node, &packet);
    let in_place = unwrap_in_place(&keys.node, &mut packet);
    match (owned, in_place) {
        (Ok(owned), Ok(in_place)) => {
            assert_eq!(owned.replay_tag, in_place.replay_tag);
            match (owned.action, in_place.action) {
                (
                    Action::Relay {
                        next_address,
                        packet: next,
                        ..
                    },
                    InPlaceAction::Relay { .. },
                ) => {
                    assert!(!next_address.is_empty());
                    assert_eq!(next, packet);
                }
                (
                    Action::Deliver {
                        destination,
                        packet: next,
                        ..
                    },
                    InPlaceAction::Deliver { .. },
                ) => {
                    assert!(!destination.is_empty());
                    assert_eq!(next, packet);
                }
                (Action::Final { payload }, InPlaceAction::Final { payload: range }) => {
                    assert!(payload.len() <= PAYLOAD_LEN);
                    assert_eq!(payload, packet[range]);
                }
                (a, b) => panic!("owned and in-place unwrap disagree: {a:?} / {b:?}"),
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert!(
                matches!(a, PacketError::Malformed(_)),
                "sealed layer gave {a:?}"
            );
        }
        (a, b) => panic!("owned and in-place unwrap disagree: {a:?} / {b:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::packet_unwrap;

    /// Runs the fuzz body over structured seeds and pseudo-random inputs, so
    /// the harness is exercised without nightly or libFuzzer.
    #[test]
    fn fuzz_body_survives_seeds_and_random_inputs() {
        let mut seeds: Vec<Vec<u8>> = vec![vec![], vec![0; PACKET_LEN_SEED], vec![0xff; 3000]];
        // Routing blocks of every kind, with edge-case lengths.
        for kind in 0..=4u8 {
            for addr_len in [0u8, 1, 64, 65, 255] {
                for payload_len in [0u16, 1, 2048, 2049, 0xffff] {
                    let mut block = vec![0u8; 80];
                    block[0] = kind;
                    block[1] = addr_len;
                    block[2..4].copy_from_slice(&payload_len.to_be_bytes());
                    block[8..8 + usize::from(addr_len.min(64))].fill(b'a');
                    seeds.push(block);
                }
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 3000) as usize;
            seeds.push((0..len).map(|i| (state >> (i % 56)) as u8).collect());
        }
        for seed in &seeds {
            packet_unwrap(seed);
        }
    }

    const PACKET_LEN_SEED: usize = mixnode::packet::PACKET_LEN;
}
