//! Betanet mixnode library: the packet format, the node's forwarding pipeline
//! and the pieces the `mixnode` and `loadgen` binaries share.
