//! Unit tests for the packet format: round trips over 1..=MAX_HOPS layers,
//! tamper detection at the first hop that sees a flipped byte, replays,
//! wrong keys, input bounds and garbage input.

use std::time::Duration;

use super::*;
use crate::replay::ReplayFilter;

pub(super) struct Net {
    pub keys: Vec<SecretKey>,
    pub route: Vec<RouteHop>,
}

pub(super) fn network(hops: usize) -> Net {
    let keys: Vec<SecretKey> = (0..hops).map(|_| SecretKey::generate()).collect();
    let route = keys
        .iter()
        .enumerate()
        .map(|(i, key)| RouteHop {
            address: format!("mixnode-{}:1789", i + 1),
            public_key: key.public_key(),
            delay: Duration::from_micros(1000 * (i as u64 + 1) + 7),
        })
        .collect();
    Net { keys, route }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// The packet as each hop receives it (index j = input of hop j).
fn packets_per_hop(net: &Net, payload: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = vec![build_packet(&net.route, payload).expect("build")];
    for key in &net.keys[..net.keys.len() - 1] {
        let next = match unwrap_packet(key, packets.last().unwrap())
            .expect("unwrap")
            .action
        {
            Action::Relay { packet, .. } | Action::Deliver { packet, .. } => packet,
            Action::Final { .. } => panic!("final before the destination"),
        };
        packets.push(next);
    }
    packets
}

#[test]
fn sizes_are_as_documented() {
    assert_eq!(ROUTING_LEN, 72);
    assert_eq!(LAYER_OVERHEAD, 120);
    assert_eq!(PACKET_LEN, 2648);
}

#[test]
fn round_trip_over_1_to_max_hops() {
    for hops in 1..=MAX_HOPS {
        for len in [0, 1, 100, PAYLOAD_LEN] {
            let net = network(hops);
            let message = payload(len);
            let mut packet = build_packet(&net.route, &message).unwrap();
            for (j, key) in net.keys.iter().enumerate() {
                assert_eq!(packet.len(), PACKET_LEN, "hop {j} of {hops}");
                let Unwrapped { action, .. } = unwrap_packet(key, &packet).unwrap();
                match action {
                    Action::Relay {
                        next_address,
                        delay,
                        packet: next,
                    } => {
                        assert!(j + 2 < hops, "relay at hop {j} of {hops}");
                        assert_eq!(next_address, net.route[j + 1].address);
                        assert_eq!(delay, net.route[j].delay);
                        packet = next;
                    }
                    Action::Deliver {
                        destination,
                        delay,
                        packet: next,
                    } => {
                        assert_eq!(j + 2, hops, "deliver at hop {j} of {hops}");
                        assert_eq!(destination, net.route[hops - 1].address);
                        assert_eq!(delay, net.route[j].delay, "exit delay");
                        packet = next;
                    }
                    Action::Final { payload } => {
                        assert_eq!(j + 1, hops, "final at hop {j} of {hops}");
                        assert_eq!(payload, message);
                    }
                }
            }
        }
    }
}

#[test]
fn in_place_matches_owned_unwrap() {
    let net = network(4);
    let message = payload(1234);
    let mut buffer = build_packet(&net.route, &message).unwrap();
    let mut owned = buffer.clone();
    for key in &net.keys {
        let in_place = unwrap_in_place(key, &mut buffer).unwrap();
        let unwrapped = unwrap_packet(key, &owned).unwrap();
        assert_eq!(in_place.replay_tag, unwrapped.replay_tag);
        match (in_place.action, unwrapped.action) {
            (
                InPlaceAction::Relay {
                    next_address: a,
                    delay: d,
                },
                Action::Relay {
                    next_address: b,
                    delay: e,
                    packet,
                },
            ) => {
                assert_eq!((a, d), (b, e));
                assert_eq!(buffer, packet);
                owned = packet;
            }
            (
                InPlaceAction::Deliver {
                    destination: a,
                    delay: d,
                },
                Action::Deliver {
                    destination: b,
                    delay: e,
                    packet,
                },
            ) => {
                assert_eq!((a, d), (b, e));
                assert_eq!(buffer, packet);
                owned = packet;
            }
            (InPlaceAction::Final { payload: range }, Action::Final { payload }) => {
                assert_eq!(&buffer[range], &payload[..]);
                assert_eq!(payload, message);
            }
            (a, b) => panic!("actions differ: {a:?} vs {b:?}"),
        }
    }
}

/// The exit holds a packet like every other mix: its `RouteHop.delay`
/// travels in its deliver block and comes back out of both unwrap paths,
/// for every route length, from zero to the largest delay the field holds.
#[test]
fn exit_delay_round_trips() {
    let delays = [
        Duration::ZERO,
        Duration::from_micros(1),
        Duration::from_millis(1500),
        Duration::from_micros(u64::from(u32::MAX)),
    ];
    for hops in 2..=MAX_HOPS {
        for exit_delay in delays {
            let mut net = network(hops);
            let exit = hops - 2;
            net.route[exit].delay = exit_delay;
            let packets = packets_per_hop(&net, b"exit delay");
            let mut in_place = packets[exit].clone();
            match unwrap_in_place(&net.keys[exit], &mut in_place)
                .unwrap()
                .action
            {
                InPlaceAction::Deliver { destination, delay } => {
                    assert_eq!(destination, net.route[hops - 1].address);
                    assert_eq!(delay, exit_delay, "in place, {hops} hops");
                }
                other => panic!("exit of {hops} hops got {other:?}"),
            }
            match unwrap_packet(&net.keys[exit], &packets[exit])
                .unwrap()
                .action
            {
                Action::Deliver { delay, packet, .. } => {
                    assert_eq!(delay, exit_delay, "owned, {hops} hops");
                    assert_eq!(packet, in_place);
                }
                other => panic!("exit of {hops} hops got {other:?}"),
            }
            // The relays before it still carry their own delays.
            for (j, packet) in packets.iter().enumerate().take(exit) {
                match unwrap_packet(&net.keys[j], packet).unwrap().action {
                    Action::Relay { delay, .. } => assert_eq!(delay, net.route[j].delay),
                    other => panic!("hop {j} of {hops} got {other:?}"),
                }
            }
        }
    }
    // An exit delay beyond the u32 field is refused when building, as for relays.
    let mut net = network(3);
    net.route[1].delay = Duration::from_micros(u64::from(u32::MAX) + 1);
    assert_eq!(
        build_packet(&net.route, b"x").unwrap_err(),
        PacketError::DelayTooLong
    );
}

#[test]
fn every_flipped_byte_is_rejected_by_the_first_hop() {
    let net = network(4);
    let packets = packets_per_hop(&net, &payload(PAYLOAD_LEN));
    // Hop 0: every single byte position (ephemeral key, tag, routing block,
    // inner layers, payload region, filler).
    for position in 0..PACKET_LEN {
        let mut tampered = packets[0].clone();
        tampered[position] ^= 0x01;
        assert_eq!(
            unwrap_packet(&net.keys[0], &tampered).unwrap_err(),
            PacketError::Authentication,
            "flip at byte {position} accepted by hop 0"
        );
    }
    // Later hops: a byte flipped in transit to hop j (after hop j−1 accepted
    // the packet) is rejected by hop j, in each region of the packet.
    let regions = [
        ("ephemeral key", 0),
        ("ephemeral key", 31),
        ("tag", 32),
        ("tag", 47),
        ("routing block", 48),
        ("routing block", 119),
        ("next layer", 150),
        ("payload region", 1000),
        ("payload region", 2000),
        ("appended padding", PACKET_LEN - LAYER_OVERHEAD),
        ("appended padding", PACKET_LEN - 1),
        ("older padding", PACKET_LEN - 2 * LAYER_OVERHEAD - 5),
    ];
    for (j, packet) in packets.iter().enumerate().skip(1) {
        for &(region, position) in &regions {
            let mut tampered = packet.clone();
            tampered[position] ^= 0x80;
            assert_eq!(
                unwrap_packet(&net.keys[j], &tampered).unwrap_err(),
                PacketError::Authentication,
                "flip in {region} (byte {position}) accepted by hop {j}"
            );
        }
        // The untampered packet is still accepted.
        unwrap_packet(&net.keys[j], packet).unwrap();
    }
}

#[test]
fn replays_are_detected_by_the_filter() {
    let net = network(3);
    let packet = build_packet(&net.route, b"hello").unwrap();
    let other = build_packet(&net.route, b"hello").unwrap();
    let filter = ReplayFilter::new(10_000, net.keys[0].public_key().fingerprint());
    let first = unwrap_packet(&net.keys[0], &packet).unwrap();
    assert!(filter.check_and_insert(&first.replay_tag));
    let again = unwrap_packet(&net.keys[0], &packet).unwrap();
    assert_eq!(first.replay_tag, again.replay_tag);
    assert!(
        !filter.check_and_insert(&again.replay_tag),
        "replay accepted"
    );
    let fresh = unwrap_packet(&net.keys[0], &other).unwrap();
    assert_ne!(fresh.replay_tag, first.replay_tag);
    assert!(filter.check_and_insert(&fresh.replay_tag));
}

#[test]
fn wrong_key_is_rejected() {
    let net = network(3);
    let packet = build_packet(&net.route, b"secret").unwrap();
    for key in [&net.keys[1], &net.keys[2], &SecretKey::generate()] {
        assert_eq!(
            unwrap_packet(key, &packet).unwrap_err(),
            PacketError::Authentication
        );
    }
}

#[test]
fn bounds_give_errors_not_panics() {
    let net = network(MAX_HOPS);
    assert_eq!(
        build_packet(&[], b"x").unwrap_err(),
        PacketError::EmptyRoute
    );
    let mut too_long = net.route.clone();
    too_long.push(net.route[0].clone());
    assert_eq!(
        build_packet(&too_long, b"x").unwrap_err(),
        PacketError::TooManyHops
    );
    assert_eq!(
        build_packet(&net.route, &payload(PAYLOAD_LEN + 1)).unwrap_err(),
        PacketError::PayloadTooLarge
    );
    let mut route = net.route.clone();
    route[1].address = "a".repeat(ADDRESS_LEN);
    assert!(build_packet(&route, b"x").is_ok());
    route[1].address = "a".repeat(ADDRESS_LEN + 1);
    assert_eq!(
        build_packet(&route, b"x").unwrap_err(),
        PacketError::AddressTooLong
    );
    route[1].address = String::new();
    assert_eq!(
        build_packet(&route, b"x").unwrap_err(),
        PacketError::AddressTooLong
    );
    let mut route = net.route.clone();
    route[0].delay = Duration::from_secs(3 * 3600);
    assert_eq!(
        build_packet(&route, b"x").unwrap_err(),
        PacketError::DelayTooLong
    );
    let mut route = net.route.clone();
    route[2].public_key = PublicKey([0u8; 32]);
    assert_eq!(
        build_packet(&route, b"x").unwrap_err(),
        PacketError::InvalidPublicKey
    );
    for len in [0, 1, PACKET_LEN - 1, PACKET_LEN + 1, 10 * PACKET_LEN] {
        let err = unwrap_packet(&net.keys[0], &vec![0u8; len]).unwrap_err();
        assert_eq!(
            err,
            PacketError::WrongLength {
                expected: PACKET_LEN,
                actual: len
            }
        );
        assert_eq!(err.reason(), "wrong_length");
    }
}

#[test]
fn multibyte_utf8_addresses_round_trip() {
    let mut net = network(2);
    net.route[1].address = "ünïcødé-höst:1789".to_string();
    let packet = build_packet(&net.route, b"x").unwrap();
    match unwrap_packet(&net.keys[0], &packet).unwrap().action {
        Action::Deliver { destination, .. } => assert_eq!(destination, "ünïcødé-höst:1789"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn random_garbage_never_panics() {
    let key = SecretKey::generate();
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..500 {
        let len = if round % 5 == 0 {
            (next() % (2 * PACKET_LEN as u64)) as usize
        } else {
            PACKET_LEN
        };
        let garbage: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let err = unwrap_packet(&key, &garbage).unwrap_err();
        assert!(matches!(
            err,
            PacketError::Authentication | PacketError::WrongLength { .. }
        ));
    }
    // A low-order ephemeral key (all zeros) yields no shared secret.
    let mut packet = build_packet(&network(1).route, b"x").unwrap();
    packet[..KEY_LEN].fill(0);
    assert_eq!(
        unwrap_packet(&key, &packet).unwrap_err(),
        PacketError::Authentication
    );
}

#[test]
fn keys_and_filter_can_be_shared_across_worker_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SecretKey>();
    assert_send_sync::<ReplayFilter>();
    assert_send_sync::<Unwrapped>();
    let net = network(2);
    let key = std::sync::Arc::new(net.keys[0].clone());
    let packet = std::sync::Arc::new(build_packet(&net.route, b"shared").unwrap());
    let tags: Vec<ReplayTag> = (0..2)
        .map(|_| {
            let (key, packet) = (key.clone(), packet.clone());
            std::thread::spawn(move || unwrap_packet(&key, &packet).unwrap().replay_tag)
        })
        .map(|handle| handle.join().unwrap())
        .collect();
    assert_eq!(tags[0], tags[1]);
}
