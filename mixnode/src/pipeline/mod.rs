//! The forwarding pipeline: `ingress` reads fixed-size frames from TCP and
//! admits them in batches (connection limits and per-source fair shares in
//! `sources`, token bucket, queue cap; a full queue stops reading); `workers` unwrap them on
//! PIPELINE_WORKERS OS threads and check replay tags; `scheduler` holds each
//! packet for its per-hop delay in one timer heap; `egress` writes it to the
//! next hop over one persistent connection per peer with a bounded buffer.
//! Every stage is bounded, and every packet ends counted exactly once as
//! forwarded, delivered or dropped with a reason (see [`crate::metrics`]).

pub mod admission;
pub mod egress;
pub mod ingress;
pub mod scheduler;
pub mod sources;
pub mod workers;

pub use sources::Ticket;

use std::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::packet::SecretKey;
use crate::replay::ReplayFilter;
use crate::topology::Topology;

/// State every stage shares.
pub struct Shared {
    pub config: Config,
    pub key: SecretKey,
    pub metrics: Metrics,
    pub replay: ReplayFilter,
    pub admission: admission::Admission,
    pub sources: std::sync::Arc<sources::Sources>,
    pub topology: Topology,
}

/// A frame read from the mix port, admitted and waiting to be unwrapped.
pub struct Inbound {
    pub frame: Vec<u8>,
    pub received: Instant,
    pub ticket: Ticket,
}

/// Whether the next hop is another mix or the packet's destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Relay,
    Deliver,
}

/// An unwrapped packet on its way to the next hop.
pub struct Outbound {
    pub next: String,
    pub kind: Kind,
    pub packet: Vec<u8>,
    pub received: Instant,
    /// When its mix delay ends.
    pub release: Instant,
    pub ticket: Ticket,
}
