//! cargo-fuzz target: `unwrap_packet` with a fixed node key, on raw bytes and
//! on bytes sealed as an authenticated layer (see `mixnode_fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mixnode_fuzz::packet_unwrap(data));
