//! Conformance tests: the implementation against FORMAT.md (a layer
//! recomputed with raw HMAC and AES-GCM calls), the routing block's
//! validation behind a valid tag, and key encodings.

use std::time::Duration;

use super::tests::network;
use super::*;

/// A correctly authenticated layer whose routing block is invalid: the hop
/// reports `Malformed`, never panics.
#[test]
fn authenticated_but_malformed_routing_is_rejected() {
    let key = SecretKey::generate();
    type Corruption = (&'static str, fn(&mut [u8]));
    let cases: [Corruption; 5] = [
        ("unknown kind", |r| r[0] = 9),
        ("address too long", |r| {
            r[0] = 1;
            r[1] = 65
        }),
        ("bad utf-8", |r| {
            r[0] = 1;
            r[1] = 1;
            r[8] = 0xff
        }),
        ("payload too long", |r| {
            r[0] = 3;
            r[2..4].copy_from_slice(&(PAYLOAD_LEN as u16 + 1).to_be_bytes())
        }),
        ("junk after address", |r| {
            r[0] = 1;
            r[1] = 1;
            r[8] = b'a';
            r[20] = 1
        }),
    ];
    for (name, corrupt) in cases {
        let mut plaintext = vec![0u8; testing::LAYER_PLAINTEXT_LEN];
        corrupt(&mut plaintext[..ROUTING_LEN]);
        let packet =
            testing::seal_raw_layer(&key.public_key(), &SecretKey::generate(), &plaintext).unwrap();
        let err = unwrap_packet(&key, &packet).unwrap_err();
        assert!(matches!(err, PacketError::Malformed(_)), "{name}: {err:?}");
        assert_eq!(err.reason(), "malformed");
    }
}

/// FORMAT.md's deliver block carries the exit's delay at bytes 4..8, u32
/// big-endian, exactly like a relay block.
#[test]
fn deliver_block_carries_the_exit_delay_at_bytes_4_to_8() {
    let key = SecretKey::generate();
    let mut plaintext = vec![0u8; testing::LAYER_PLAINTEXT_LEN];
    plaintext[0] = 2; // deliver
    plaintext[1] = 6;
    plaintext[4..8].copy_from_slice(&2_500_000u32.to_be_bytes());
    plaintext[8..14].copy_from_slice(b"dest:9");
    let packet =
        testing::seal_raw_layer(&key.public_key(), &SecretKey::generate(), &plaintext).unwrap();
    match unwrap_packet(&key, &packet).unwrap().action {
        Action::Deliver {
            destination, delay, ..
        } => assert_eq!(
            (destination.as_str(), delay),
            ("dest:9", Duration::from_millis(2500))
        ),
        other => panic!("expected deliver, got {other:?}"),
    }
}

#[test]
fn keys_round_trip_and_print_as_hex() {
    let key = SecretKey::generate();
    let again = SecretKey::from_bytes(key.to_bytes());
    assert_eq!(key.public_key(), again.public_key());
    let hex = key.public_key().to_string();
    assert_eq!(hex.len(), 64);
    assert!(hex
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert_eq!(hex.parse::<PublicKey>().unwrap(), key.public_key());
    assert_eq!(
        hex.to_uppercase().parse::<PublicKey>().unwrap(),
        key.public_key()
    );
    // Any 32 bytes are a usable secret (X25519 clamps), even all zeros or ones.
    for bytes in [[0u8; 32], [0xff; 32]] {
        let edge = SecretKey::from_bytes(bytes);
        let mut net = network(1);
        net.route[0].public_key = edge.public_key();
        let packet = build_packet(&net.route, b"edge").unwrap();
        let action = unwrap_packet(&edge, &packet).unwrap().action;
        assert_eq!(
            action,
            Action::Final {
                payload: b"edge".to_vec()
            }
        );
    }
    assert!("abc".parse::<PublicKey>().is_err());
    assert!("zz".repeat(32).parse::<PublicKey>().is_err());
    assert!(format!("{key:?}").contains(&hex));
    // RFC 7748 section 6.1 test vector (Alice).
    let alice = SecretKey::from_bytes([
        0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66,
        0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9,
        0x2c, 0x2a,
    ]);
    assert_eq!(
        alice.public_key().to_string(),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
}

/// Recomputes one layer exactly as FORMAT.md specifies, with raw HMAC and
/// AES-GCM calls, and checks the implementation agrees byte for byte.
#[test]
fn key_schedule_matches_format_md() {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    use aws_lc_rs::{agreement, hmac};

    let node = SecretKey::from_bytes([0x42; 32]);
    let ephemeral = SecretKey::from_bytes([0x17; 32]);
    let (e, hop) = (ephemeral.public_key().0, node.public_key().0);
    let mut plaintext = vec![0u8; testing::LAYER_PLAINTEXT_LEN];
    plaintext[..ROUTING_LEN].copy_from_slice(&{
        let mut block = [0u8; ROUTING_LEN];
        block[0] = 1; // relay
        block[1] = 3;
        block[4..8].copy_from_slice(&1500u32.to_be_bytes());
        block[8..11].copy_from_slice(b"a:1");
        block
    });
    plaintext[ROUTING_LEN..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    let packet = testing::seal_raw_layer(&node.public_key(), &ephemeral, &plaintext).unwrap();

    // s = X25519(ephemeral secret, hop public)
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, hop);
    let s = agreement::agree(&ephemeral.key, peer, (), |s| Ok(s.to_vec())).unwrap();
    // PRK = HMAC(salt = E ‖ hop, s); OKM = T1 ‖ T2[..16] (RFC 5869)
    let salt = [&e[..], &hop[..]].concat();
    let prk = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salt), &s);
    let prk = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
    let t1 = hmac::sign(&prk, b"fog-mixnode/v1 layer\x01");
    let t2 = hmac::sign(&prk, &[t1.as_ref(), b"fog-mixnode/v1 layer\x02"].concat());
    let k_aead = t1.as_ref();
    let replay_tag = &t2.as_ref()[..16];
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k_aead).unwrap());

    // Wire: E ‖ T ‖ C with C, T = AES-256-GCM(k_aead, nonce 0, AAD = E).
    assert_eq!(&packet[..32], &e);
    let mut sealed = plaintext.clone();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(e),
            &mut sealed,
        )
        .unwrap();
    assert_eq!(&packet[32..48], tag.as_ref());
    assert_eq!(&packet[48..], &sealed[..]);

    // Padding = keystream under nonce 1; next packet = M[72..] ‖ padding.
    let mut padding = [0u8; LAYER_OVERHEAD];
    let mut nonce = [0u8; 12];
    nonce[11] = 1;
    let _ = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut padding,
        )
        .unwrap();
    let unwrapped = unwrap_packet(&node, &packet).unwrap();
    assert_eq!(&unwrapped.replay_tag.0[..], replay_tag);
    let Action::Relay {
        next_address,
        delay,
        packet: next,
    } = unwrapped.action
    else {
        panic!("expected relay");
    };
    assert_eq!(
        (next_address.as_str(), delay),
        ("a:1", Duration::from_micros(1500))
    );
    assert_eq!(
        &next[..PACKET_LEN - LAYER_OVERHEAD],
        &plaintext[ROUTING_LEN..]
    );
    assert_eq!(&next[PACKET_LEN - LAYER_OVERHEAD..], &padding);
}
