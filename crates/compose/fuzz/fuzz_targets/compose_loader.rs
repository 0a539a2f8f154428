//! cargo-fuzz target: the compose loader (interpolation, `.env` reading,
//! normalisation, merge, `config` output) on arbitrary bytes; see `src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fog_compose_fuzz::compose_loader(data));
