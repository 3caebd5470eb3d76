//! Fuzz target: arbitrary bytes through every decoder of frames and answers
//! (see `hongbao_client::fuzz::frames`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hongbao_client::fuzz::frames(data));
