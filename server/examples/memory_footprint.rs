//! Measures the engine's memory: bytes per envelope and per paid claim.
//!
//! A counting global allocator records the heap in use while one shard's
//! engine fills up, so the figures include hash-table slack and vector growth,
//! not just `size_of`. Run with
//! `cargo run --release -p hongbao-server --example memory_footprint`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use hongbao_protocol::body::CreateRequest;
use hongbao_server::engine::{Engine, EngineConfig};
use zerocopy::little_endian::{U32, U64};

struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(new_size, Ordering::Relaxed);
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn create(engine: &mut Engine, count: u32) -> u64 {
    let req = CreateRequest {
        sender: U64::new(1),
        total_cents: U64::new(u64::from(count) * 100),
        count: U32::new(count),
        kind: 0,
        reserved0: [0; 3],
        expires_in_secs: U32::new(3600),
        reserved1: U32::new(0),
    };
    engine.create(0, &req).expect("create").envelope.get()
}

fn main() {
    let envelopes: u64 = 1_000_000;
    let count: u32 = 8;
    let config =
        EngineConfig { envelopes_max: envelopes, claims_max: envelopes * 8, ..EngineConfig::default() };
    let mut engine = Engine::new(config);
    let base = IN_USE.load(Ordering::Relaxed);

    let ids: Vec<u64> = (0..envelopes).map(|_| create(&mut engine, count)).collect();
    let ids_bytes = ids.capacity() * 8;
    let after_create = IN_USE.load(Ordering::Relaxed) - ids_bytes;
    let per_envelope = (after_create - base) as f64 / envelopes as f64;

    let mut user = 1;
    for id in &ids {
        for _ in 0..count {
            engine.grab(1, *id, user);
            engine.open(1, *id, user);
            user += 1;
        }
    }
    let after_open = IN_USE.load(Ordering::Relaxed) - ids_bytes;
    let claims = envelopes * u64::from(count);
    let per_claim = (after_open - after_create) as f64 / claims as f64;
    engine.assert_all_invariants();
    println!("envelopes: {envelopes}, shares each: {count}, claims paid: {claims}");
    println!(
        "heap after creating:   {:>8.1} MiB, {per_envelope:.0} bytes per envelope",
        (after_create - base) as f64 / 1048576.0
    );
    println!(
        "heap after paying all: {:>8.1} MiB, {per_claim:.0} bytes per claim",
        (after_open - base) as f64 / 1048576.0
    );
}
