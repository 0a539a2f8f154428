//! PIPELINE_WORKERS OS threads that unwrap packets: the CPU-bound step (one
//! X25519 per packet). Each takes a whole batch from the shared queue,
//! unwraps every frame, checks its replay tag, that the node's role may act
//! on it (only an exit delivers, only to EXIT_ALLOW when set), that a relay
//! goes to a known mix (no open relay) and that its delay is within
//! MAX_DELAY_MS, and hands the survivors, each with its mix delay, to the
//! scheduler as one batch. The threads end when the
//! ingress side hangs up.

use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::{Inbound, Kind, Outbound, Shared};
use crate::config::Role;
use crate::metrics::{DropReason, MAX_PACKET_AGE};
use crate::packet::{unwrap_in_place, InPlaceAction};

/// Starts `count` worker threads reading batches from `from_ingress`.
pub fn spawn(
    count: usize,
    from_ingress: mpsc::Receiver<Vec<Inbound>>,
    to_scheduler: UnboundedSender<Vec<Outbound>>,
    shared: Arc<Shared>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let queue = Arc::new(Mutex::new(from_ingress));
    (0..count)
        .map(|i| {
            let (queue, tx, shared) = (queue.clone(), to_scheduler.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("unwrap-{i}"))
                .spawn(move || run(&queue, &tx, &shared))
        })
        .collect()
}

fn run(
    queue: &Mutex<mpsc::Receiver<Vec<Inbound>>>,
    to_scheduler: &UnboundedSender<Vec<Outbound>>,
    shared: &Shared,
) {
    loop {
        let batch = {
            let receiver = queue.lock().unwrap_or_else(|e| e.into_inner());
            match receiver.recv() {
                Ok(batch) => batch,
                Err(_) => return,
            }
        };
        let ready: Vec<Outbound> = batch
            .into_iter()
            .filter_map(|p| process(shared, p))
            .collect();
        if ready.is_empty() {
            continue;
        }
        if let Err(unsent) = to_scheduler.send(ready) {
            let n = unsent.0.len();
            shared.metrics.drop_packets(DropReason::Shutdown, n as u64);
        }
    }
}

/// Unwraps one packet; returns it ready to schedule, or counts the drop.
fn process(shared: &Shared, inbound: Inbound) -> Option<Outbound> {
    let metrics = &shared.metrics;
    let received = inbound.received;
    let outcome = if received.elapsed() > MAX_PACKET_AGE {
        Err(DropReason::Expired)
    } else {
        unwrap_one(shared, inbound)
    };
    match outcome {
        Ok(out) => {
            metrics.observe(received.elapsed());
            Some(out)
        }
        Err(reason) => {
            // The packet (and its ticket) is dropped here.
            metrics.drop_packets(reason, 1);
            None
        }
    }
}

fn unwrap_one(shared: &Shared, inbound: Inbound) -> Result<Outbound, DropReason> {
    let Inbound {
        frame: mut packet,
        received,
        ticket,
    } = inbound;
    // Unwrap in the frame's own buffer: it becomes the next packet.
    let unwrapped = unwrap_in_place(&shared.key, &mut packet).map_err(|e| {
        tracing::debug!(reason = e.reason(), "dropping packet that does not unwrap");
        match e.reason() {
            "replay" => DropReason::Replay,
            "expired" => DropReason::Expired,
            _ => DropReason::Malformed,
        }
    })?;
    if !shared.replay.check_and_insert(&unwrapped.replay_tag) {
        return Err(DropReason::Replay);
    }
    let (next, kind, delay) = match unwrapped.action {
        // Mixes relay only to mixes: never an open relay.
        InPlaceAction::Relay { next_address, .. } if !shared.topology.is_mix(&next_address) => {
            return Err(DropReason::UnknownNextHop)
        }
        InPlaceAction::Relay {
            next_address,
            delay,
        } => (next_address, Kind::Relay, delay),
        // Only an exit talks to destinations outside the mix network.
        InPlaceAction::Deliver { .. } if shared.config.role != Role::Exit => {
            return Err(DropReason::Role)
        }
        InPlaceAction::Deliver { destination, .. }
            if !shared.topology.may_deliver(&destination) =>
        {
            return Err(DropReason::ExitDenied)
        }
        InPlaceAction::Deliver { destination, delay } => (destination, Kind::Deliver, delay),
        // A mix is never a packet's destination.
        InPlaceAction::Final { .. } => return Err(DropReason::Malformed),
    };
    if delay > shared.config.max_delay {
        return Err(DropReason::ExcessiveDelay);
    }
    Ok(Outbound {
        next,
        kind,
        packet,
        received,
        release: Instant::now() + delay,
        ticket,
    })
}
