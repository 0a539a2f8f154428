//! NODE_TYPE is enforced: only an `exit` node acts on a deliver (exit)
//! instruction; an `entry` or `middle` node that finds one drops the packet,
//! counted as `mixnode_packets_dropped_total{reason="role"}`, and sends
//! nothing to the destination. Relaying is allowed at every role, the exit
//! included.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{packet_for_exit, packets_via, Node, Sink};

#[test]
fn entry_and_middle_nodes_drop_deliver_instructions_as_role() {
    for role in ["entry", "middle"] {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(role, dir.path(), &[]);
        let destination = Sink::start();
        let next_mix = Sink::start();
        let mut stream = TcpStream::connect(node.mix_address()).unwrap();
        for _ in 0..3 {
            let packet = packet_for_exit(
                node.public_key(),
                &node.mix_address(),
                &destination.address,
                Duration::ZERO,
            );
            stream.write_all(&packet).unwrap();
        }
        // A relay instruction at the same node still goes through.
        let relayed = packets_via(node.public_key(), &node.mix_address(), &next_mix.address, 1);
        stream.write_all(&relayed[0]).unwrap();
        common::eventually(20, "role drops counted", || {
            node.metrics().dropped("role") == 3.0
        });
        common::eventually(20, "relay forwarded", || next_mix.count() == 1);
        let m = node.wait_quiescent();
        assert_eq!(m.received(), 4.0, "{role}: {m:?}");
        assert_eq!(m.forwarded(), 1.0, "{role}: {m:?}");
        assert_eq!(m.delivered(), 0.0, "{role}: {m:?}");
        assert_eq!(m.dropped_total(), 3.0, "{role}: only role drops: {m:?}");
        assert_eq!(node.status()["counters"]["dropped"]["role"], 3, "{role}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            destination.count(),
            0,
            "{role} node delivered to a destination"
        );
    }
}

#[test]
fn exit_node_delivers_and_also_relays() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start("exit", dir.path(), &[]);
    let destination = Sink::start();
    let next_mix = Sink::start();
    let mut stream = TcpStream::connect(node.mix_address()).unwrap();
    let delivered = packet_for_exit(
        node.public_key(),
        &node.mix_address(),
        &destination.address,
        Duration::ZERO,
    );
    stream.write_all(&delivered).unwrap();
    for packet in packets_via(node.public_key(), &node.mix_address(), &next_mix.address, 2) {
        stream.write_all(&packet).unwrap();
    }
    common::eventually(20, "delivered", || destination.count() == 1);
    common::eventually(20, "relayed", || next_mix.count() == 2);
    let m = node.wait_quiescent();
    assert_eq!(
        (
            m.received(),
            m.delivered(),
            m.forwarded(),
            m.dropped_total()
        ),
        (3.0, 1.0, 2.0, 0.0),
        "{m:?}"
    );
}
