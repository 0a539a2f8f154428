//! Betanet mixnode library: the packet format, the node's forwarding pipeline
//! and the pieces the `mixnode` and `loadgen` binaries share.

pub mod packet;
pub mod replay;
