//! The machine's floor for one-request-at-a-time traffic: the cost of a system
//! call and of a loopback TCP round trip between two threads, with no server
//! logic at all. Run it beside `bench/run` to see how much of a
//! not-pipelined request is the kernel's.
//!
//! `taskset -c 0,1 cargo run --release -p hongbao-server --example loopback_floor`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() {
    let calls = 2_000_000u32;
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..calls {
        // getpid is a real system call in current glibc (no cache).
        sum = sum.wrapping_add(u64::from(std::process::id()));
    }
    let syscall_ns = start.elapsed().as_nanos() as f64 / f64::from(calls);
    println!("system call (getpid): {syscall_ns:.0} ns (checksum {})", sum % 7);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut request = [0u8; 40];
        while stream.read_exact(&mut request).is_ok() {
            if stream.write_all(&[0u8; 48]).is_err() {
                break;
            }
        }
    });
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let mut answer = [0u8; 48];
    let trips = 100_000u32;
    let start = Instant::now();
    for _ in 0..trips {
        client.write_all(&[0u8; 40]).expect("write");
        client.read_exact(&mut answer).expect("read");
    }
    let elapsed = start.elapsed();
    println!(
        "loopback TCP round trip (40-byte request, 48-byte answer, blocking threads): {:.1} us, {:.0} per second",
        elapsed.as_secs_f64() * 1e6 / f64::from(trips),
        f64::from(trips) / elapsed.as_secs_f64()
    );
    drop(client);
    echo.join().expect("echo thread");
}
