//! Fuzz target: arbitrary bytes as one client's stream through the server's
//! frame loop, handler and engine (see `hongbao_server::fuzz::server_input`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hongbao_server::fuzz::server_input(data));
