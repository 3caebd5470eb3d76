//! Fuzz target: arbitrary bytes as a log and as a snapshot (see
//! `hongbao_server::fuzz::log_replay`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hongbao_server::fuzz::log_replay(data));
